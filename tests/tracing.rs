//! With the `tracing` feature: a span per authenticated request, an event per
//! rejection, and never a whole token in the output.
#![cfg(feature = "tracing")]

use std::io::Write;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use tower::{Layer, ServiceExt, service_fn};
use tower_jwt_auth::JwtAuth;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_reasons_subjects_and_jtis_but_never_tokens() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let auth = JwtAuth::builder().hs256([3u8; 32]).build().unwrap();
    let pair = auth.token_pair("alice").unwrap();
    let svc = auth
        .layer()
        .layer(service_fn(|_req: Request<String>| async {
            tracing::info!("inside the handler");
            Ok::<_, std::convert::Infallible>(Response::new(String::new()))
        }));
    for token in [&pair.access_token, &pair.refresh_token] {
        let req = Request::builder()
            .header("authorization", format!("Bearer {token}"))
            .body(String::new())
            .unwrap();
        svc.clone().oneshot(req).await.unwrap();
    }
    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    println!("{logs}");
    assert!(logs.contains("authenticated"), "{logs}");
    assert!(
        logs.contains(&pair.access_claims.jti),
        "the handler's event carries the jti"
    );
    assert!(logs.contains("sub=alice"));
    assert!(logs.contains("request rejected") && logs.contains("wrong type"));
    for secret in [&pair.access_token, &pair.refresh_token] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "a token leaked into the logs");
    }
}
