//! The operations a call runs: each names its span and its error messages. Plain data: the
//! driver (`crate::call`) starts the spans, the table in `crate::policy` says which operations
//! may fall back to another model.

/// The operations the driver runs; each names its span and its error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Converse,
    ConverseStream,
    Invoke,
    InvokeStream,
    Session,
    CountTokens,
    Embed,
    StartAsyncInvoke,
    GetAsyncInvoke,
    ListAsyncInvokes,
    ApplyGuardrail,
    InvokeGuardrailChecks,
}

impl Op {
    /// Returns the operation's name as the SDK spells it, for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Converse => "converse",
            Op::ConverseStream => "converse_stream",
            Op::Invoke => "invoke_model",
            Op::InvokeStream => "invoke_model_with_response_stream",
            Op::Session => "invoke_model_with_bidirectional_stream",
            Op::CountTokens => "count_tokens",
            Op::Embed => "embed",
            Op::StartAsyncInvoke => "start_async_invoke",
            Op::GetAsyncInvoke => "get_async_invoke",
            Op::ListAsyncInvokes => "list_async_invokes",
            Op::ApplyGuardrail => "apply_guardrail",
            Op::InvokeGuardrailChecks => "invoke_guardrail_checks",
        }
    }

    /// Returns `gen_ai.operation.name`: Converse and InvokeModel are `chat` (a model-native
    /// body is a chat request for the models Bedrock serves), embeddings `embeddings`, an
    /// async invocation (video, images) `generate_content`; counting tokens and reading async
    /// jobs have no name in the conventions and keep their own.
    pub(crate) fn operation(self) -> &'static str {
        match self {
            Op::Converse | Op::ConverseStream | Op::Invoke | Op::InvokeStream | Op::Session => {
                "chat"
            }
            Op::Embed => "embeddings",
            Op::CountTokens => "count_tokens",
            Op::StartAsyncInvoke => "generate_content",
            Op::GetAsyncInvoke => "get_async_invoke",
            Op::ListAsyncInvokes => "list_async_invokes",
            Op::ApplyGuardrail => "apply_guardrail",
            Op::InvokeGuardrailChecks => "invoke_guardrail_checks",
        }
    }

    /// Returns the service operation the call sends (`rpc.method`, as the AWS SDK
    /// conventions name it): an embedding call is an InvokeModel.
    pub(crate) fn rpc_method(self) -> &'static str {
        match self {
            Op::Converse => "Converse",
            Op::ConverseStream => "ConverseStream",
            Op::Invoke | Op::Embed => "InvokeModel",
            Op::InvokeStream => "InvokeModelWithResponseStream",
            Op::Session => "InvokeModelWithBidirectionalStream",
            Op::CountTokens => "CountTokens",
            Op::StartAsyncInvoke => "StartAsyncInvoke",
            Op::GetAsyncInvoke => "GetAsyncInvoke",
            Op::ListAsyncInvokes => "ListAsyncInvokes",
            Op::ApplyGuardrail => "ApplyGuardrail",
            Op::InvokeGuardrailChecks => "InvokeGuardrailChecks",
        }
    }
}
