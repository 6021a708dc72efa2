//! Heap allocations per authenticated request, counted with a counting allocator.
//!
//! The layer may add at most two allocations beyond those of the claims type itself
//! (deserializing `TokenPayload`) and of the request's extensions map.

use std::alloc::{GlobalAlloc, Layout, System};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service, service_fn};
use tower_jwt_auth::{Authenticated, ImplicitRefresh, JwtAuth, TokenPayload};

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

/// The counter is process-wide: tests that count run one at a time.
static COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn count<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let out = f();
    (ALLOCATIONS.load(Ordering::SeqCst) - before, out)
}

fn auth(cache: usize) -> JwtAuth {
    JwtAuth::builder()
        .hs256(b"an allocation-test secret of 32+ bytes")
        .without_revocation()
        .implicit_refresh(ImplicitRefresh::disabled())
        .verified_token_cache(cache)
        .build()
        .unwrap()
}

fn token(auth: &JwtAuth) -> String {
    auth.access_token("alice")
        .scopes(["read"])
        .claim(
            "profile",
            serde_json::json!({"name": "Alice", "roles": ["admin"]}),
        )
        .issue()
        .unwrap()
}

// A header value shared like hyper's (refcounted, no copy on clone).
fn request(bearer: &HeaderValue) -> Request<()> {
    let mut req = Request::new(());
    req.headers_mut()
        .insert(http::header::AUTHORIZATION, bearer.clone());
    req
}

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(format!("Bearer {token}"))).unwrap()
}

struct Costs {
    /// The same request without the layer.
    baseline: usize,
    /// Parsing the token's claims once.
    claims: usize,
    /// An `http::Extensions` map holding one value (map, table, boxed value).
    extensions: usize,
}

fn costs(token: &str) -> Costs {
    let mut bare = service_fn(|_req: Request<()>| async move {
        Ok::<_, std::convert::Infallible>(Response::new(()))
    });
    let header = bearer(token);
    let _ = ready(bare.call(request(&header)));
    let (baseline, _) = count(|| ready(bare.call(request(&header))));
    let payload_json = {
        use base64::Engine;
        let p = token.split('.').nth(1).unwrap();
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap()
    };
    let (claims, _) = count(|| serde_json::from_slice::<TokenPayload>(&payload_json).unwrap());
    let (extensions, _) = count(|| {
        let mut e = http::Extensions::new();
        e.insert(0u8);
        e
    });
    Costs {
        baseline,
        claims,
        extensions,
    }
}

fn layered(
    auth: &JwtAuth,
) -> impl Service<Request<()>, Response = Response<()>, Error = std::convert::Infallible, Future: Send>
{
    auth.layer()
        .layer(service_fn(|req: Request<()>| async move {
            assert!(req.extensions().get::<Authenticated>().is_some());
            Ok::<_, std::convert::Infallible>(Response::new(()))
        }))
}

/// A repeated token (a cache hit): no claims parse, no claims copy. What remains is
/// `http::Extensions` itself: its map, its table and the box of the one value the
/// layer inserts (`Authenticated`).
#[test]
fn allocations_on_a_cache_hit() {
    let _one_at_a_time = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let auth = auth(1_000);
    let token = token(&auth);
    let c = costs(&token);
    let mut svc = layered(&auth);
    let header = bearer(&token);
    for _ in 0..3 {
        let _ = ready(svc.call(request(&header)));
    }
    let (total, res) = count(|| ready(svc.call(request(&header))));
    assert_eq!(res.unwrap().status(), 200);
    let by_layer = total - c.baseline;
    println!(
        "hit: baseline {}, with the layer {total}: the layer allocates {by_layer} (extensions map with one value: {})",
        c.baseline, c.extensions
    );
    assert!(by_layer <= 3, "a hit allocates {by_layer} times");
    assert_eq!(
        by_layer, c.extensions,
        "a hit allocates more than an extensions map holding one value"
    );
}

/// A token seen for the first time: the claims parse, the extensions map, and at most
/// two more (the `Arc` the claims are shared through, the presented token's header
/// value), the same with the cache on: a token is only cached on its second sight.
#[test]
fn allocations_on_first_sight() {
    let _one_at_a_time = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    for capacity in [0, 1_000] {
        let auth = auth(capacity);
        let tokens: Vec<String> = (0..12).map(|_| token(&auth)).collect();
        let c = costs(&tokens[0]);
        let mut svc = layered(&auth);
        for t in &tokens[1..4] {
            let _ = ready(svc.call(request(&bearer(t))));
        }
        // The fewest over several new tokens: the cache's tables grow now and then
        // (amortised), which is not a per-request cost.
        let total = tokens[4..]
            .iter()
            .map(|t| {
                let header = bearer(t);
                let (total, res) = count(|| ready(svc.call(request(&header))));
                assert_eq!(res.unwrap().status(), 200);
                total
            })
            .min()
            .unwrap();
        let added = total - c.baseline - c.claims - c.extensions;
        println!(
            "first sight, cache {capacity}: baseline {}, claims {}, extensions map {}, layered {total}: the layer adds {added}",
            c.baseline, c.claims, c.extensions
        );
        assert!(
            added <= 2,
            "cache {capacity}: the layer adds {added} allocations"
        );
    }
}

/// What a route sees behind a router: the request already carries extensions (axum's
/// router inserts its own, such as the matched path), so the map and its table exist
/// and a hit costs only the box of the one value the layer inserts.
#[test]
fn allocations_on_a_cache_hit_behind_a_router() {
    #[derive(Clone)]
    struct RouterMarker(#[allow(dead_code)] u64);
    let _one_at_a_time = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
    let auth = auth(1_000);
    let token = token(&auth);
    let header = bearer(&token);
    let routed = || {
        let mut req = request(&header);
        req.extensions_mut().insert(RouterMarker(1));
        req
    };
    let mut bare = service_fn(|_req: Request<()>| async move {
        Ok::<_, std::convert::Infallible>(Response::new(()))
    });
    let _ = ready(bare.call(routed()));
    let mut svc = layered(&auth);
    for _ in 0..3 {
        let _ = ready(svc.call(routed()));
    }
    // The request is built outside the counted section both times.
    let req = routed();
    let (baseline, _) = count(|| ready(bare.call(req)));
    let req = routed();
    let (total, res) = count(|| ready(svc.call(req)));
    assert_eq!(res.unwrap().status(), 200);
    let by_layer = total - baseline;
    println!("hit behind a router: baseline {baseline}, with the layer {total}: {by_layer}");
    assert!(
        by_layer <= 1,
        "a hit behind a router allocates {by_layer} times"
    );
}
