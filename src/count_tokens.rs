//! CountTokens through model handles: the same inputs as a Converse request (messages, system,
//! tools), the input token count out, through the call driver.

use crate::call::drive;
use crate::error::Result;
use crate::op::Op;
use crate::request::{ConverseRequest, Unary};
use crate::stats::Outcome;
use crate::transport::RetryRule;
use aws_sdk_bedrockruntime::types::{ConverseTokensRequest, CountTokensInput};

impl ConverseRequest<Unary> {
    /// Counts the input tokens this request would send, with the service's CountTokens
    /// (free): the same messages, system prompt and tools, validated the same way.
    ///
    /// ```no_run
    /// # async fn run(model: bedrock_pool::Model) -> bedrock_pool::Result<()> {
    /// let n = model.converse().system("be brief").user("hello there").count_tokens().await?;
    /// # let _ = n; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`send`](Self::send). A model or region without CountTokens answers with a
    /// `ValidationException`: [`ErrorKind::Validation`](crate::ErrorKind::Validation), with
    /// the service's message.
    pub async fn count_tokens(self) -> Result<u64> {
        let model = self.model.clone();
        let answer = drive(
            model.chain(),
            Op::CountTokens,
            RetryRule::default(),
            || self.validate(),
            |v, id, to| {
                let input = CountTokensInput::Converse(
                    ConverseTokensRequest::builder()
                        .set_messages(v.messages.clone())
                        .set_system(v.system.clone())
                        .set_tool_config(v.tools.clone())
                        .set_additional_model_request_fields(v.additional_fields.clone())
                        .build(),
                );
                to.client.count_tokens().model_id(id).input(input).send()
            },
        )
        .await?;
        let mut call = answer.call;
        call.finish(Outcome::Success);
        Ok(u64::try_from(answer.output.input_tokens()).unwrap_or(0))
    }
}
