//! Every RPC as reflection describes it, and calls of any shape built from the descriptors.

use super::*;

// ---- Discovery through reflection -----------------------------------------------------------

/// One RPC as reflection describes it.
#[derive(Debug)]
pub(super) struct Rpc {
    /// "podium.v1.Access/IssueToken".
    pub(super) name: String,
    /// "/podium.v1.Access/IssueToken".
    pub(super) path: String,
    pub(super) client_streaming: bool,
    pub(super) server_streaming: bool,
    pub(super) input: MessageDescriptor,
    pub(super) output: MessageDescriptor,
    /// The request has a `conference_id`, at the top or in its first message (an upload's
    /// header), so the call is about one conference.
    pub(super) names_conference: bool,
}

/// Every RPC of every service podiumd's reflection lists, but the infrastructure ones.
pub(super) async fn discover(channel: &Channel) -> Vec<Rpc> {
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let services = match ask(&mut reflection, MessageRequest::ListServices(String::new())).await {
        MessageResponse::ListServicesResponse(list) => list.service,
        other => panic!("reflection answered ListServices with {other:?}"),
    };
    let services: Vec<String> = services
        .into_iter()
        .map(|s| s.name)
        .filter(|name| !INFRASTRUCTURE.iter().any(|p| name.starts_with(p)))
        .collect();
    assert!(!services.is_empty(), "reflection lists no podium service");

    // Each service's file, then every file those import, by name, as grpcurl does.
    let mut files: BTreeMap<String, prost_types::FileDescriptorProto> = BTreeMap::new();
    let mut wanted: Vec<MessageRequest> = services
        .iter()
        .map(|s| MessageRequest::FileContainingSymbol(s.clone()))
        .collect();
    while let Some(request) = wanted.pop() {
        let MessageResponse::FileDescriptorResponse(found) = ask(&mut reflection, request).await
        else {
            panic!("reflection answered a file request with something else");
        };
        for bytes in found.file_descriptor_proto {
            let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap();
            for dependency in &file.dependency {
                if !files.contains_key(dependency) {
                    wanted.push(MessageRequest::FileByFilename(dependency.clone()));
                }
            }
            files.insert(file.name().to_owned(), file);
        }
    }
    let mut pool = DescriptorPool::new();
    pool.add_file_descriptor_protos(files.into_values())
        .expect("reflection's descriptors build a pool");

    let mut rpcs = Vec::new();
    for name in services {
        let service = pool
            .get_service_by_name(&name)
            .unwrap_or_else(|| panic!("reflection lists {name} but describes no such service"));
        for method in service.methods() {
            rpcs.push(Rpc {
                name: format!("{}/{}", service.full_name(), method.name()),
                path: format!("/{}/{}", service.full_name(), method.name()),
                client_streaming: method.is_client_streaming(),
                server_streaming: method.is_server_streaming(),
                names_conference: names_conference(&method.input(), 0),
                input: method.input(),
                output: method.output(),
            });
        }
    }
    rpcs
}

pub(super) async fn ask(
    reflection: &mut ServerReflectionClient<Channel>,
    request: MessageRequest,
) -> MessageResponse {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = reflection
        .server_reflection_info(stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers
        .message()
        .await
        .unwrap()
        .expect("a reflection answer");
    match answer.message_response {
        Some(MessageResponse::ErrorResponse(e)) => {
            panic!("reflection refused: {} {}", e.error_code, e.error_message)
        }
        Some(response) => response,
        None => panic!("an empty reflection answer"),
    }
}

pub(super) fn names_conference(message: &MessageDescriptor, depth: usize) -> bool {
    depth < 4
        && message.fields().any(|field| {
            field.name() == "conference_id"
                || match field.kind() {
                    Kind::Message(m) if !field.is_list() && !field.is_map() => {
                        names_conference(&m, depth + 1)
                    }
                    _ => false,
                }
        })
}

// ---- Generic requests and calls -------------------------------------------------------------

/// Sets, where the template left them empty, every id field the matrix knows, every enum to
/// its first real value (so that validation passes), and descends into nested messages and
/// into the first message of a oneof (an upload's header, an agent's hello). Returns whether
/// it set anything.
pub(super) fn fill(message: &mut DynamicMessage, ids: &Ids, depth: usize) -> bool {
    if depth > 4 {
        return false;
    }
    let mut changed = false;
    for field in message.descriptor().fields() {
        if field.is_list() || field.is_map() {
            continue;
        }
        let oneof = field.containing_oneof().filter(|o| !o.is_synthetic());
        if let Some(oneof) = &oneof {
            let chosen = oneof
                .fields()
                .find(|f| message.has_field(f))
                .or_else(|| oneof.fields().next());
            if chosen.map(|f| f.number()) != Some(field.number()) {
                continue;
            }
        }
        match field.kind() {
            Kind::String if !message.has_field(&field) => {
                if let Some(value) = ids.value(field.name()) {
                    message.set_field(&field, Value::String(value));
                    changed = true;
                }
            }
            Kind::Enum(kind) if !message.has_field(&field) => {
                if let Some(first) = kind.values().find(|v| v.number() != 0) {
                    message.set_field(&field, Value::EnumNumber(first.number()));
                    changed = true;
                }
            }
            Kind::Message(kind) => {
                let mut child = if message.has_field(&field) {
                    message
                        .get_field(&field)
                        .as_message()
                        .cloned()
                        .unwrap_or_else(|| DynamicMessage::new(kind.clone()))
                } else {
                    DynamicMessage::new(kind)
                };
                if fill(&mut child, ids, depth + 1) || oneof.is_some() {
                    message.set_field(&field, Value::Message(child));
                    changed = true;
                }
            }
            _ => {}
        }
    }
    changed
}

/// The encoded request for `rpc`: the template's fields, then [`fill`].
pub(super) fn request(rpc: &Rpc, template: &str, ids: &Ids) -> Vec<u8> {
    let mut message = if template.is_empty() {
        DynamicMessage::new(rpc.input.clone())
    } else {
        let mut json = serde_json::Deserializer::from_str(template);
        let message = DynamicMessage::deserialize(rpc.input.clone(), &mut json)
            .unwrap_or_else(|e| panic!("the template of {} does not parse: {e}", rpc.name));
        json.end().unwrap();
        message
    };
    fill(&mut message, ids, 0);
    message.encode_to_vec()
}

/// How a call ended: its status code (OK on success), message, and the first message of the
/// answer.
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) code: Code,
    pub(super) message: String,
    pub(super) first: Option<Vec<u8>>,
}

pub(super) async fn call(
    channel: &Channel,
    rpc: &Rpc,
    template: &str,
    ids: &Ids,
    case: &Case,
) -> Outcome {
    let body = request(rpc, template, ids);
    match tokio::time::timeout(
        ANSWER_WITHIN,
        exchange(channel, rpc, case.authorization.as_deref(), body),
    )
    .await
    {
        Ok(Ok(first)) => Outcome {
            code: Code::Ok,
            message: String::new(),
            first,
        },
        Ok(Err(status)) => Outcome {
            code: status.code(),
            message: status.message().to_owned(),
            first: None,
        },
        Err(_) => Outcome {
            code: Code::DeadlineExceeded,
            message: format!("no answer within {ANSWER_WITHIN:?}"),
            first: None,
        },
    }
}

/// One call of any shape: the request (one message; a bidirectional stream stays open after
/// it), then the response or a stream's first message.
pub(super) async fn exchange(
    channel: &Channel,
    rpc: &Rpc,
    authorization: Option<&str>,
    body: Vec<u8>,
) -> Result<Option<Vec<u8>>, Status> {
    fn authorised<T>(message: T, authorization: Option<&str>) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().expect("an ASCII header"));
        }
        request
    }
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("channel not ready: {e}")))?;
    let path = PathAndQuery::try_from(rpc.path.as_str()).expect("a gRPC path");
    let request = authorised((), authorization);
    match (rpc.client_streaming, rpc.server_streaming) {
        (false, false) => {
            let response = grpc.unary(request.map(|()| body), path, Raw).await?;
            Ok(Some(response.into_inner()))
        }
        (true, false) => {
            let parts = stream::iter([body]);
            let response = grpc
                .client_streaming(request.map(|()| parts), path, Raw)
                .await?;
            Ok(Some(response.into_inner()))
        }
        (false, true) => {
            let mut answers = grpc
                .server_streaming(request.map(|()| body), path, Raw)
                .await?
                .into_inner();
            answers.message().await
        }
        (true, true) => {
            let parts = stream::iter([body]).chain(stream::pending());
            let mut answers = grpc
                .streaming(request.map(|()| parts), path, Raw)
                .await?
                .into_inner();
            answers.message().await
        }
    }
}

/// A codec that sends and receives encoded messages as they are, for calls built from
/// descriptors.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}
