//! The ceiling of the side-by-side benchmark: a minimal hyper 1.x server on
//! one thread that answers every request with the same V2 JSON body, so what
//! it measures is HTTP on loopback and nothing else.
//!
//! `fixed_body ADDR` listens on ADDR (`127.0.0.1:0` picks a port, printed on
//! stdout as `listening on ADDR`).

#![allow(clippy::print_stdout, reason = "the address is this program's output")]

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// What Sluice answers for the 30-feature model at batch 1.
const BODY: &str = r#"{"model_name":"logreg30","model_version":"1","outputs":[{"name":"probability","datatype":"FP32","shape":[1,1],"data":[0.4378]}]}"#;

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // The body is read, as a server that parsed it would have to.
    let _ = http_body_util::BodyExt::collect(request.into_body()).await;
    let mut response = Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    })
}
