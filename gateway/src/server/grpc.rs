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
//! Triton's start-up calls are answered as Triton answers them where
//! Sluice has the facts (`ModelConfig`, `RepositoryIndex`, the
//! shared-memory status: no region), and refused with `UNIMPLEMENTED`
//! where it does not do the thing (loading models on demand, shared
//! memory, traces, log settings).

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
use super::call::{self, Call, Served};
use super::inference::{Encoded, Payload, REQUEST_ID_HEADER};
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

/// A `ModelInfer` call, its message held against the memory budget
/// (`--max-body-bytes-in-flight`) as it arrives, as HTTP bodies are in
/// `body::collect`: tonic reads a message whole before the handler runs,
/// and many streams of large messages must be refused, not read. The bytes
/// are held until the message is decoded; the handler then holds them in
/// the request's own part of the budget. (`ModelStreamInfer` reads one
/// message at a time per stream, each covered by its request.)
pub fn budgeted(request: axum::http::Request<Body>, state: &AppState) -> axum::http::Request<Body> {
    if !request.uri().path().ends_with("/ModelInfer") {
        return request;
    }
    let held = state.body_budget.empty();
    request.map(|body| Body::new(Budgeted { body, held, seen: 0 }))
}

struct Budgeted {
    body: Body,
    held: Held,
    seen: usize,
}

impl http_body::Body for Budgeted {
    type Data = axum::body::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::task::ready!(Pin::new(&mut self.body).poll_frame(cx));
        let frame = match polled {
            None => return std::task::Poll::Ready(None),
            Some(Err(err)) => {
                return std::task::Poll::Ready(Some(Err(Status::cancelled(format!(
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
            return std::task::Poll::Ready(Some(Err(Status::from(refused))));
        }
        std::task::Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
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

/// One inference through the common path: the answer, or the status.
async fn infer(
    state: &AppState,
    headers: &HeaderMap,
    message: wire::ModelInferRequest,
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
        client_deadline_opt,
    };
    let Served { result, version_opt } = call::infer(state, call).await;
    let version_value_opt = version_opt.and_then(|label| MetadataValue::try_from(label).ok());
    match result {
        Ok(answered) => {
            let Encoded::Grpc(message) = answered.encoded else {
                return Err(Error::Internal("a gRPC request was answered as HTTP".into()).into());
            };
            let mut response = Response::new(*message);
            let metadata = response.metadata_mut();
            if let Some(value) = version_value_opt {
                metadata.insert(crate::server::handlers::MODEL_VERSION_HEADER, value);
            }
            if let Some(value) = answered
                .request_id_opt
                .and_then(|id| MetadataValue::try_from(id).ok())
            {
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
        let (metadata, _, message) = request.into_parts();
        let headers = metadata.into_headers();
        let deadline_opt = client_deadline(&headers, Instant::now())?;
        infer(&self.state, &headers, message, deadline_opt).await
    }

    type ModelStreamInferStream = AnswerStream;

    /// Each request answered on the stream in the order it came, each
    /// echoing its `id`; a failed one is answered with its `error_message`
    /// (Triton's form) and the stream goes on.
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<wire::ModelInferRequest>>,
    ) -> Result<Response<AnswerStream>, Status> {
        let (metadata, _, requests) = request.into_parts();
        let headers = Arc::new(metadata.into_headers());
        let state = self.state.clone();
        let answers = requests
            .map(move |received| {
                let (state, headers) = (state.clone(), headers.clone());
                async move {
                    let message = received?;
                    let id = message.id.clone();
                    Ok(match infer(&state, &headers, message, None).await {
                        Ok(answered) => wire::ModelStreamInferResponse {
                            error_message: String::new(),
                            infer_response: Some(answered.into_inner()),
                        },
                        Err(status) => wire::ModelStreamInferResponse {
                            error_message: status.message().to_string(),
                            // Which request failed: its id, as Triton tags it.
                            infer_response: Some(wire::ModelInferResponse {
                                id,
                                ..Default::default()
                            }),
                        },
                    })
                }
            })
            .buffered(STREAM_IN_FLIGHT);
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
