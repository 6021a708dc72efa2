//! Heap allocations per authenticated request, counted with a counting allocator.
//!
//! The layer may add at most two allocations beyond those of the claims type itself
//! (deserializing `TokenPayload`) and of the request's extensions map.

use std::alloc::{GlobalAlloc, Layout, System};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service, service_fn};
use tower_jwt_auth::{ImplicitRefresh, JwtAuth, TokenPayload};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds
// `GlobalAlloc`'s contract; this wrapper only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("not ready"),
    }
}

fn count<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let out = f();
    (ALLOCATIONS.load(Ordering::SeqCst) - before, out)
}

#[test]
fn allocations_per_authenticated_request() {
    let auth = JwtAuth::builder()
        .hs256(b"an allocation-test secret of 32+ bytes")
        .without_revocation()
        .implicit_refresh(ImplicitRefresh::disabled())
        .build()
        .unwrap();
    let token = auth.access_token("alice").scopes(["read"]).issue().unwrap();
    let payload_json = {
        use base64::Engine;
        let p = token.split('.').nth(1).unwrap();
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap()
    };
    // A header value shared like hyper's (refcounted, no copy on clone).
    let bearer =
        HeaderValue::from_maybe_shared(bytes::Bytes::from(format!("Bearer {token}"))).unwrap();
    let mut svc = auth
        .layer()
        .layer(service_fn(|req: Request<()>| async move {
            assert!(req.extensions().get::<Arc<TokenPayload>>().is_some());
            Ok::<_, std::convert::Infallible>(Response::new(()))
        }));
    let mut bare = service_fn(|_req: Request<()>| async move {
        Ok::<_, std::convert::Infallible>(Response::new(()))
    });
    let request = || {
        let mut req = Request::new(());
        req.headers_mut()
            .insert(http::header::AUTHORIZATION, bearer.clone());
        req
    };
    // Warm up lazily initialised state.
    for _ in 0..3 {
        let _ = ready(svc.call(request()));
    }
    let (baseline, _) = count(|| {
        let req = request();
        ready(bare.call(req))
    });
    let (claims, _) = count(|| serde_json::from_slice::<TokenPayload>(&payload_json).unwrap());
    let (extensions, _) = count(|| {
        let mut e = http::Extensions::new();
        e.insert(0u8);
        e
    });
    let (layered, res) = count(|| {
        let req = request();
        ready(svc.call(req))
    });
    assert_eq!(res.unwrap().status(), 200);
    let added = layered - baseline - claims - extensions;
    println!(
        "baseline {baseline}, claims {claims}, extensions map {extensions}, layered {layered}: the layer adds {added}"
    );
    assert!(added <= 2, "the layer adds {added} allocations per request");
}
