//! The Open Inference Protocol's gRPC service, `inference.GRPCInferenceService`,
//! on the predict listener beside HTTP ([`is_grpc`] tells them apart).
//!
//! `ModelInfer` and each message of `ModelStreamInfer` go through
//! [`call::infer`], the path HTTP's infer takes: routing (the sticky key
//! and the predict token come from gRPC metadata), admission, validation,
//! batching, deadlines (`grpc-timeout` as well as the `timeout`
//! parameter), the log, the mirrors, drift, contracts and accounting.
//! `x-model-version` and `x-request-id` come back as metadata; failures are
//! the codes [`Error::code`] maps.
//!
//! Around tonic's service, the listener's dispatch does what tonic's own
//! server cannot: [`prepared`] stamps a call's arrival and holds a
//! `ModelInfer` message against the memory budget, within the body read
//! timeout, as it arrives (and refuses an anonymous one before reading it
//! where every model needs a token); [`holding`] keeps an answer's slots
//! and bytes until it is written.
//!
//! Triton's start-up calls are answered as Triton answers them where
//! Sluice has the facts (`ModelConfig`, `RepositoryIndex`, the
//! shared-memory status: no region), and refused with `UNIMPLEMENTED`
//! where it does not do the thing (loading models on demand, shared
//! memory, traces, log settings).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::HeaderMap;
use futures_util::{Stream, StreamExt};
use prost::Message;
use sluice_proto::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use sluice_proto::inference::{self as wire, repository_index_response::ModelIndex};
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use super::AppState;
use super::admission::Admitted;
use super::call::{self, Call, Served};
use super::inference::{Answered, Encoded, Payload, REQUEST_ID_HEADER};
use crate::error::Error;
use crate::protocol::{self, grpc};
use crate::slots::Held;

/// Requests of one `ModelStreamInfer` stream run at once; the next is read
/// from the stream once one is answered (and its answer taken by the
/// client): a client that does not read its answers stops being read.
const STREAM_IN_FLIGHT: usize = 16;

/// Whether `headers` are a gRPC call's (`content-type: application/grpc`,
/// `application/grpc+proto`, ...).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// When a call's request arrived, before its message was read: the
/// server's timeout and the caller's `grpc-timeout` count from here.
#[derive(Clone, Copy)]
struct Arrived(Instant);

/// A gRPC call, ready for the service: stamped with its arrival and, for
/// `ModelInfer`, its message held against the memory budget
/// (`--max-body-bytes-in-flight`) as it arrives and bounded by the body
/// read timeout, as HTTP bodies are in `body::collect`: tonic reads a
/// message whole before the handler runs, and many slow or large messages
/// must be refused, not read. The bytes are held until the message is
/// decoded; the handler then holds them in the request's own part of the
/// budget. (`ModelStreamInfer` reads one message at a time per stream,
/// each covered by its request once admitted.)
pub fn prepared(mut request: axum::http::Request<Body>, state: &AppState) -> axum::http::Request<Body> {
    let arrived = Instant::now();
    request.extensions_mut().insert(Arrived(arrived));
    if !request.uri().path().ends_with("/ModelInfer") {
        return request;
    }
    // Where every model needs a token, one without a known token is
    // refused before a byte of its message is held.
    let refused_opt = state.access.check_before_model(request.headers()).err();
    let held = state.body_budget.empty();
    let timeout = state.limits.body_read_timeout;
    request.map(|body| {
        Body::new(Budgeted {
            body,
            refused_opt,
            held,
            seen: 0,
            timeout,
            arrived,
            read_by: Box::pin(tokio::time::sleep(timeout)),
        })
    })
}

struct Budgeted {
    body: Body,
    /// Refused before it is read: the first poll answers this.
    refused_opt: Option<Error>,
    held: Held,
    seen: usize,
    timeout: Duration,
    arrived: Instant,
    /// The body read timeout, from the call's arrival.
    read_by: Pin<Box<tokio::time::Sleep>>,
}

impl Budgeted {
    /// A refusal before the call reached a version: counted as HTTP's are.
    fn refuse(&self, refused: Error) -> Status {
        call::count_unrouted(&refused, self.arrived);
        Status::from(refused)
    }
}

impl http_body::Body for Budgeted {
    type Data = axum::body::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        if let Some(refused) = self.refused_opt.take() {
            return Poll::Ready(Some(Err(self.refuse(refused))));
        }
        let polled = match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(polled) => polled,
            Poll::Pending => {
                if self.read_by.as_mut().poll(cx).is_ready() {
                    let late = Error::BodyTimeout(self.timeout.as_millis() as u64);
                    return Poll::Ready(Some(Err(self.refuse(late))));
                }
                return Poll::Pending;
            }
        };
        let frame = match polled {
            None => return Poll::Ready(None),
            Some(Err(err)) => {
                return Poll::Ready(Some(Err(Status::cancelled(format!(
                    "cannot read the request: {err}"
                )))));
            }
            Some(Ok(frame)) => frame,
        };
        let this = &mut *self;
        this.seen = this
            .seen
            .saturating_add(frame.data_ref().map_or(0, |data| data.len()));
        if !this.held.grow_to(this.seen) {
            let refused = super::admission::rejected("", "bytes", Error::BodyBudget);
            return Poll::Ready(Some(Err(self.refuse(refused))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// What a gRPC answer holds until it is written (an extension of the
/// handler's response, moved into its body by [`holding`]): its slots and
/// its part of the memory budget, as HTTP's `HeldBody` holds them.
#[derive(Clone)]
struct Holding {
    _admitted: Arc<Admitted>,
}

/// The service's response with what its answer holds moved into its body,
/// released once the body is written (or dropped).
pub fn holding(mut response: axum::response::Response) -> axum::response::Response {
    let Some(held) = response.extensions_mut().remove::<Holding>() else {
        return response;
    };
    // hyper takes a frame whole into the stream's send buffer, whatever the
    // client's window, and then asks for the next: an answer given whole
    // would be "written", its hold let go, before the client read a byte.
    // In slices it asks for the next only as the window opens.
    response.map(|body| {
        Body::new(HoldingBody {
            body,
            pending: axum::body::Bytes::new(),
            _held: held,
        })
    })
}

struct HoldingBody {
    body: Body,
    /// What is left of a data frame, handed out a slice at a time.
    pending: axum::body::Bytes,
    _held: Holding,
}

impl http_body::Body for HoldingBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.pending.is_empty() {
            let frame = match std::task::ready!(Pin::new(&mut this.body).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                other => return Poll::Ready(other),
            };
            match frame.into_data() {
                Ok(data) => this.pending = data,
                Err(frame) => return Poll::Ready(Some(Ok(frame))),
            }
        }
        let slice = this
            .pending
            .split_to(this.pending.len().min(super::body::ANSWER_SLICE));
        Poll::Ready(Some(Ok(http_body::Frame::data(slice))))
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = self.body.size_hint();
        let pending = self.pending.len() as u64;
        hint.set_lower(hint.lower().saturating_add(pending));
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper.saturating_add(pending));
        }
        hint
    }
}

/// The service's routes, for the predict listener's router. Messages are
/// bounded by the same limits as HTTP bodies and answers.
pub fn routes(state: Arc<AppState>) -> axum::Router {
    let (max_request, max_response) = (state.max_request_bytes, state.limits.max_response_bytes);
    let service = GrpcInferenceServiceServer::new(Service { state })
        .max_decoding_message_size(max_request)
        .max_encoding_message_size(max_response)
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Deflate)
        .send_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Deflate);
    tonic::service::Routes::new(service).into_axum_router()
}

struct Service {
    state: Arc<AppState>,
}

/// A pinned version: gRPC's empty `model_version` means none.
fn version_of(version: &str) -> Option<&str> {
    Some(version).filter(|version| !version.is_empty())
}

/// When the caller stops waiting, from its `grpc-timeout` (an integer of at
/// most 8 digits and a unit: `H`, `M`, `S`, `m`, `u`, `n`).
fn client_deadline(metadata: &HeaderMap, now: Instant) -> Result<Option<Instant>, Status> {
    let Some(value) = metadata.get("grpc-timeout") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    let invalid = || {
        Status::invalid_argument(format!(
            "grpc-timeout '{}' is not a gRPC timeout",
            text.escape_default()
        ))
    };
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    if digits.is_empty() || digits.len() > 8 {
        return Err(invalid());
    }
    let amount: u64 = digits.parse().map_err(|_| invalid())?;
    let timeout = match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return Err(invalid()),
    };
    Ok(now.checked_add(timeout))
}

/// One inference through the common path: the answer, holding what its
/// request holds until it is written ([`Holding`]), or the status.
async fn infer(
    state: &AppState,
    headers: &HeaderMap,
    message: wire::ModelInferRequest,
    arrived: Instant,
    client_deadline_opt: Option<Instant>,
) -> Result<Response<wire::ModelInferResponse>, Status> {
    let length = message.encoded_len();
    // The names move into the call; the message keeps its tensors.
    let (model, version) = (message.model_name.clone(), message.model_version.clone());
    let call = Call {
        model: &model,
        version_opt: version_of(&version),
        headers,
        payload: Payload::Grpc(Box::new(message), length),
        arrived,
        client_deadline_opt,
    };
    let Served { result, version_opt } = call::infer(state, call).await;
    let version_value_opt = version_opt.and_then(|label| MetadataValue::try_from(label).ok());
    match result {
        Ok(answered) => {
            let Answered {
                encoded,
                request_id_opt,
                mut admitted,
                nonfinite: _,
            } = answered;
            let Encoded::Grpc(message) = encoded else {
                return Err(Error::Internal("a gRPC request was answered as HTTP".into()).into());
            };
            // The answer is built: what the request held becomes its size.
            admitted.bytes.set(message.encoded_len());
            let mut response = Response::new(*message);
            response.extensions_mut().insert(Holding {
                _admitted: Arc::new(admitted),
            });
            let metadata = response.metadata_mut();
            if let Some(value) = version_value_opt {
                metadata.insert(crate::server::handlers::MODEL_VERSION_HEADER, value);
            }
            if let Some(value) = request_id_opt.and_then(|id| MetadataValue::try_from(id).ok()) {
                metadata.insert(REQUEST_ID_HEADER, value);
            }
            Ok(response)
        }
        Err(err) => {
            let mut status = Status::from(err);
            if let Some(value) = version_value_opt {
                status
                    .metadata_mut()
                    .insert(crate::server::handlers::MODEL_VERSION_HEADER, value);
            }
            Err(status)
        }
    }
}

type AnswerStream = Pin<Box<dyn Stream<Item = Result<wire::ModelStreamInferResponse, Status>> + Send>>;

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _request: Request<wire::ServerLiveRequest>,
    ) -> Result<Response<wire::ServerLiveResponse>, Status> {
        Ok(Response::new(wire::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _request: Request<wire::ServerReadyRequest>,
    ) -> Result<Response<wire::ServerReadyResponse>, Status> {
        Ok(Response::new(wire::ServerReadyResponse {
            ready: self.state.health.is_ready(),
        }))
    }

    /// As Triton: an unknown model or version is not ready (no error).
    async fn model_ready(
        &self,
        request: Request<wire::ModelReadyRequest>,
    ) -> Result<Response<wire::ModelReadyResponse>, Status> {
        let asked = request.into_inner();
        let table = self.state.routes.load();
        let ready = table
            .resolve(&asked.name, version_of(&asked.version))
            .is_ok_and(|model| !model.watch.is_hung());
        Ok(Response::new(wire::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _request: Request<wire::ServerMetadataRequest>,
    ) -> Result<Response<wire::ServerMetadataResponse>, Status> {
        Ok(Response::new(wire::ServerMetadataResponse {
            name: "sluice".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extensions: protocol::EXTENSIONS.iter().map(|name| name.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<wire::ModelMetadataRequest>,
    ) -> Result<Response<wire::ModelMetadataResponse>, Status> {
        let asked = request.into_inner();
        let table = self.state.routes.load();
        let model = table.resolve(&asked.name, version_of(&asked.version))?;
        let versions = table.routes[&asked.name].version_labels();
        Ok(Response::new(grpc::metadata(model, versions)))
    }

    async fn model_infer(
        &self,
        request: Request<wire::ModelInferRequest>,
    ) -> Result<Response<wire::ModelInferResponse>, Status> {
        let (metadata, extensions, message) = request.into_parts();
        let arrived = extensions
            .get::<Arrived>()
            .map_or_else(Instant::now, |arrived| arrived.0);
        let headers = metadata.into_headers();
        let deadline_opt = client_deadline(&headers, arrived)?;
        infer(&self.state, &headers, message, arrived, deadline_opt).await
    }

    type ModelStreamInferStream = AnswerStream;

    /// Each request answered on the stream in the order it came, each
    /// echoing its `id`; a failed one is answered with its `error_message`
    /// (Triton's form) and the stream goes on. The call's `grpc-timeout`
    /// bounds every request on it; a stream with no request for the idle
    /// bound (`--header-read-timeout-ms`, as an idle keep-alive) is closed.
    /// Each message's prediction is logged under its own `id` (or a new
    /// one), never under the call's `x-request-id`, which would name them all.
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<wire::ModelInferRequest>>,
    ) -> Result<Response<AnswerStream>, Status> {
        let (metadata, extensions, requests) = request.into_parts();
        let arrived = extensions
            .get::<Arrived>()
            .map_or_else(Instant::now, |arrived| arrived.0);
        let mut headers = metadata.into_headers();
        headers.remove(REQUEST_ID_HEADER);
        let deadline_opt = client_deadline(&headers, arrived)?;
        let headers = Arc::new(headers);
        let state = self.state.clone();
        let idle = state.limits.connections.header_read_timeout;
        let requests = futures_util::stream::unfold(Some(requests), move |requests_opt| async move {
            let mut requests = requests_opt?;
            match tokio::time::timeout(idle, requests.next()).await {
                Ok(Some(received)) => Some((received, Some(requests))),
                Ok(None) => None,
                Err(_) => {
                    let idle = Status::deadline_exceeded(format!(
                        "no request on the stream for {} s: it is closed",
                        idle.as_secs()
                    ));
                    Some((Err(idle), None))
                }
            }
        });
        let answers = requests
            .map(move |received| {
                let (state, headers) = (state.clone(), headers.clone());
                async move {
                    let message = received?;
                    let id = message.id.clone();
                    let arrived = Instant::now();
                    Ok(
                        match infer(&state, &headers, message, arrived, deadline_opt).await {
                            Ok(answered) => {
                                // Held until the encoder takes the answer.
                                let held_opt = answered.extensions().get::<Holding>().cloned();
                                let answer = wire::ModelStreamInferResponse {
                                    error_message: String::new(),
                                    infer_response: Some(answered.into_inner()),
                                };
                                (answer, held_opt)
                            }
                            Err(status) => {
                                let answer = wire::ModelStreamInferResponse {
                                    error_message: status.message().to_string(),
                                    // Which request failed: its id, as Triton tags it.
                                    infer_response: Some(wire::ModelInferResponse {
                                        id,
                                        ..Default::default()
                                    }),
                                };
                                (answer, None)
                            }
                        },
                    )
                }
            })
            .buffered(STREAM_IN_FLIGHT)
            .map(|answered: Result<_, Status>| answered.map(|(answer, _held)| answer));
        Ok(Response::new(Box::pin(answers)))
    }

    async fn model_config(
        &self,
        request: Request<wire::ModelConfigRequest>,
    ) -> Result<Response<wire::ModelConfigResponse>, Status> {
        let asked = request.into_inner();
        let table = self.state.routes.load();
        let model = table.resolve(&asked.name, version_of(&asked.version))?;
        Ok(Response::new(wire::ModelConfigResponse {
            config: Some(grpc::config(model)),
        }))
    }

    async fn model_statistics(
        &self,
        _request: Request<wire::ModelStatisticsRequest>,
    ) -> Result<Response<wire::ModelStatisticsResponse>, Status> {
        Err(Status::unimplemented(
            "Sluice keeps no Triton statistics: read GET /metrics (Prometheus) on this address",
        ))
    }

    async fn repository_index(
        &self,
        request: Request<wire::RepositoryIndexRequest>,
    ) -> Result<Response<wire::RepositoryIndexResponse>, Status> {
        let ready_only = request.into_inner().ready;
        let models = super::handlers::index(&self.state, ready_only)
            .into_iter()
            .map(|entry| ModelIndex {
                name: entry.name,
                version: entry.version,
                state: entry.state.to_string(),
                reason: entry.reason_opt.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(wire::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        _request: Request<wire::RepositoryModelLoadRequest>,
    ) -> Result<Response<wire::RepositoryModelLoadResponse>, Status> {
        Err(not_loaded_on_demand())
    }

    async fn repository_model_unload(
        &self,
        _request: Request<wire::RepositoryModelUnloadRequest>,
    ) -> Result<Response<wire::RepositoryModelUnloadResponse>, Status> {
        Err(not_loaded_on_demand())
    }

    /// No region is registered: Sluice takes tensors in messages only.
    async fn system_shared_memory_status(
        &self,
        _request: Request<wire::SystemSharedMemoryStatusRequest>,
    ) -> Result<Response<wire::SystemSharedMemoryStatusResponse>, Status> {
        Ok(Response::new(wire::SystemSharedMemoryStatusResponse::default()))
    }

    async fn system_shared_memory_register(
        &self,
        _request: Request<wire::SystemSharedMemoryRegisterRequest>,
    ) -> Result<Response<wire::SystemSharedMemoryRegisterResponse>, Status> {
        Err(no_shared_memory())
    }

    async fn system_shared_memory_unregister(
        &self,
        _request: Request<wire::SystemSharedMemoryUnregisterRequest>,
    ) -> Result<Response<wire::SystemSharedMemoryUnregisterResponse>, Status> {
        Err(no_shared_memory())
    }

    async fn cuda_shared_memory_status(
        &self,
        _request: Request<wire::CudaSharedMemoryStatusRequest>,
    ) -> Result<Response<wire::CudaSharedMemoryStatusResponse>, Status> {
        Ok(Response::new(wire::CudaSharedMemoryStatusResponse::default()))
    }

    async fn cuda_shared_memory_register(
        &self,
        _request: Request<wire::CudaSharedMemoryRegisterRequest>,
    ) -> Result<Response<wire::CudaSharedMemoryRegisterResponse>, Status> {
        Err(no_shared_memory())
    }

    async fn cuda_shared_memory_unregister(
        &self,
        _request: Request<wire::CudaSharedMemoryUnregisterRequest>,
    ) -> Result<Response<wire::CudaSharedMemoryUnregisterResponse>, Status> {
        Err(no_shared_memory())
    }

    async fn trace_setting(
        &self,
        _request: Request<wire::TraceSettingRequest>,
    ) -> Result<Response<wire::TraceSettingResponse>, Status> {
        Err(Status::unimplemented(
            "Sluice has no Triton traces: its logs are structured (RUST_LOG) and its metrics at GET /metrics",
        ))
    }

    async fn log_settings(
        &self,
        _request: Request<wire::LogSettingsRequest>,
    ) -> Result<Response<wire::LogSettingsResponse>, Status> {
        Err(Status::unimplemented(
            "Sluice's log level is set at start (RUST_LOG), not over the API",
        ))
    }
}

fn not_loaded_on_demand() -> Status {
    Status::unimplemented(
        "Sluice loads the versions its registry deployment or model repository names; it does not load or unload models on request",
    )
}

fn no_shared_memory() -> Status {
    Status::unimplemented("Sluice takes tensors in the request message only: it has no shared-memory regions")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn grpc_timeouts_read_as_grpc_writes_them() {
        let now = Instant::now();
        let deadline = |text: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", HeaderValue::from_str(text).unwrap());
            client_deadline(&headers, now)
        };
        assert_eq!(deadline("250m").unwrap(), Some(now + Duration::from_millis(250)));
        assert_eq!(deadline("3S").unwrap(), Some(now + Duration::from_secs(3)));
        assert_eq!(deadline("1H").unwrap(), Some(now + Duration::from_secs(3600)));
        assert_eq!(
            deadline("99999999n").unwrap(),
            Some(now + Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "123456789m", "10x", "-1S", "1.5S"] {
            let err = deadline(bad).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
        }
        assert_eq!(client_deadline(&HeaderMap::new(), now).unwrap(), None);
    }
}
