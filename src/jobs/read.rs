//! Reading async invocations through the factory: one job by its ARN (in the region the ARN
//! names), a page of jobs, and waiting for a job to end with a deadline.

use super::{AsyncInvoke, AsyncInvokeState, async_invoke, s3_uri, time};
use crate::LlmFactory;
use crate::call::plain_call;
use crate::error::{Error, ErrorKind, Result};
use crate::op::Op;
use aws_sdk_bedrockruntime::types::{AsyncInvokeStatus, SortOrder};
use std::time::{Duration, SystemTime};

/// One page of ListAsyncInvokes: the jobs, and the token of the next page.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AsyncInvokePage {
    /// The jobs of this page.
    pub jobs: Vec<AsyncInvoke>,
    /// The token of the next page ([`ListAsyncInvokesRequest::next_token`]), if there is one.
    pub next_token: Option<String>,
}

/// A ListAsyncInvokes request being built (the primary region's jobs unless
/// [`region`](Self::region) says another).
#[must_use = "a request does nothing until `.send().await`"]
#[derive(Clone, Debug)]
pub struct ListAsyncInvokesRequest {
    factory: LlmFactory,
    region: Option<String>,
    status: Option<AsyncInvokeStatus>,
    max_results: Option<i32>,
    next_token: Option<String>,
    after: Option<SystemTime>,
    before: Option<SystemTime>,
    ascending: bool,
}

impl ListAsyncInvokesRequest {
    /// Lists the jobs of this region of the factory.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Lists only the jobs with this status.
    pub fn status(mut self, status: AsyncInvokeStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Returns at most this many jobs per page (1 to 1000).
    pub fn max_results(mut self, n: i32) -> Self {
        self.max_results = Some(n);
        self
    }

    /// Reads the page after the one that gave this token.
    pub fn next_token(mut self, token: impl Into<String>) -> Self {
        self.next_token = Some(token.into());
        self
    }

    /// Lists only the jobs submitted after this time.
    pub fn submitted_after(mut self, t: SystemTime) -> Self {
        self.after = Some(t);
        self
    }

    /// Lists only the jobs submitted before this time.
    pub fn submitted_before(mut self, t: SystemTime) -> Self {
        self.before = Some(t);
        self
    }

    /// Lists the oldest first (the newest come first otherwise).
    pub fn oldest_first(mut self) -> Self {
        self.ascending = true;
        self
    }

    /// Sends the request.
    ///
    /// # Errors
    /// `max_results` out of range or a region the factory does not serve, naming the field,
    /// before any network call; otherwise the SDK's error mapped to an [`ErrorKind`].
    pub async fn send(self) -> Result<AsyncInvokePage> {
        if let Some(n) = self.max_results
            && !(1..=1000).contains(&n)
        {
            return Err(Error::invalid("max_results", "1 to 1000"));
        }
        let shared = self.factory.shared();
        let region = match &self.region {
            None => shared.regions.primary(),
            Some(r) => shared.regions.find(r).ok_or_else(|| {
                Error::invalid("region", format!("the factory does not serve {r}"))
            })?,
        };
        let call = region
            .client
            .list_async_invokes()
            .set_status_equals(self.status.clone())
            .set_max_results(self.max_results)
            .set_next_token(self.next_token.clone())
            .set_submit_time_after(self.after.map(Into::into))
            .set_submit_time_before(self.before.map(Into::into))
            .sort_order(if self.ascending {
                SortOrder::Ascending
            } else {
                SortOrder::Descending
            })
            .send();
        let out = plain_call(shared, Op::ListAsyncInvokes, &region.region, region, call).await?;
        Ok(AsyncInvokePage {
            jobs: out
                .async_invoke_summaries()
                .iter()
                .map(Into::into)
                .collect(),
            next_token: out.next_token().map(str::to_owned),
        })
    }
}

impl LlmFactory {
    /// Reads an async invocation by its ARN, in the region the ARN names (one the factory
    /// serves).
    ///
    /// # Errors
    /// An ARN that is not an async invocation's, or names a region the factory does not
    /// serve, naming `invocation_arn`, before any network call; otherwise the SDK's error
    /// mapped to an [`ErrorKind`].
    pub async fn async_invoke(&self, invocation_arn: &str) -> Result<AsyncInvoke> {
        let shared = self.shared();
        let region = arn_region(invocation_arn)?;
        let region = shared.regions.find(region).ok_or_else(|| {
            Error::invalid(
                "invocation_arn",
                format!("the ARN names {region}, a region the factory does not serve"),
            )
        })?;
        let call = region
            .client
            .get_async_invoke()
            .invocation_arn(invocation_arn)
            .send();
        let o = plain_call(shared, Op::GetAsyncInvoke, invocation_arn, region, call).await?;
        Ok(async_invoke!(o, Some(o.status())))
    }

    /// Starts a ListAsyncInvokes request (the primary region's jobs, newest first).
    pub fn async_invokes(&self) -> ListAsyncInvokesRequest {
        ListAsyncInvokesRequest {
            factory: self.clone(),
            region: None,
            status: None,
            max_results: None,
            next_token: None,
            after: None,
            before: None,
            ascending: false,
        }
    }

    /// Reads the job every `every` until it ends (completed or failed), for at most
    /// `deadline`; returns it as it ended.
    ///
    /// # Errors
    /// As [`async_invoke`](Self::async_invoke); a timeout ([`ErrorKind::Timeout`]) when the
    /// job is still running at the deadline; `every` of zero, naming `every`.
    pub async fn wait_async_invoke(
        &self,
        invocation_arn: &str,
        deadline: Duration,
        every: Duration,
    ) -> Result<AsyncInvoke> {
        if every.is_zero() {
            return Err(Error::invalid(
                "every",
                "the polling interval must be above 0",
            ));
        }
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let job = self.async_invoke(invocation_arn).await?;
            if job.state.is_terminal() {
                return Ok(job);
            }
            let now = tokio::time::Instant::now();
            if now >= until {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "the async invocation {invocation_arn} was still running after {deadline:?}"
                    ),
                ));
            }
            tokio::time::sleep(every.min(until - now)).await;
        }
    }
}

/// Returns the region an async invocation's ARN names
/// (`arn:aws:bedrock:REGION:ACCOUNT:async-invoke/ID`).
fn arn_region(arn: &str) -> Result<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "bedrock", region, _account, resource]
            if partition.starts_with("aws")
                && !region.is_empty()
                && resource.starts_with("async-invoke/") =>
        {
            Ok(region)
        }
        _ => Err(Error::invalid(
            "invocation_arn",
            format!(
                "{arn:?} is not an async invocation's ARN (arn:aws:bedrock:REGION:ACCOUNT:async-invoke/ID)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns() {
        assert_eq!(
            arn_region("arn:aws:bedrock:us-east-1:123456789012:async-invoke/abcdef123456").unwrap(),
            "us-east-1"
        );
        for bad in ["", "arn:aws:bedrock:us-east-1:1:model/x", "arn:aws:s3:::b"] {
            assert_eq!(
                arn_region(bad).unwrap_err().field(),
                Some("invocation_arn"),
                "{bad}"
            );
        }
    }
}
