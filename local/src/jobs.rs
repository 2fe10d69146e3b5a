//! Async invocations: `POST /async-invoke` (StartAsyncInvoke) keeps a job, `GET
//! /async-invoke/{invocationArn}` (GetAsyncInvoke) and `GET /async-invoke` (ListAsyncInvokes)
//! read them back. A job is `InProgress` until the server's async delay has passed since it
//! was submitted, then `Completed`, or `Failed` when its `modelInput` holds the text
//! [`FAIL_JOB`] anywhere. No output is written (there is no S3 here). A second start with the
//! same `clientRequestToken` returns the first job, as the service's idempotency does.

use serde_json::{Value, json};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// A text that, anywhere in a job's `modelInput`, makes the job fail once it ends.
pub const FAIL_JOB: &str = "FAIL_JOB";

/// The async delay of a server built without one.
pub const DEFAULT_ASYNC_DELAY: Duration = Duration::from_secs(2);

/// One async invocation.
struct Job {
    arn: String,
    model_arn: String,
    token: Option<String>,
    s3: Value,
    submitted: SystemTime,
    started: Instant,
    delay: Duration,
    fails: bool,
}

impl Job {
    /// Returns the job's status and, once it ended, when.
    fn state(&self) -> (&'static str, Option<SystemTime>) {
        if self.started.elapsed() < self.delay {
            return ("InProgress", None);
        }
        let ended = self.submitted + self.delay;
        (if self.fails { "Failed" } else { "Completed" }, Some(ended))
    }

    fn json(&self) -> Value {
        let (status, ended) = self.state();
        let mut v = json!({
            "invocationArn": self.arn,
            "modelArn": self.model_arn,
            "status": status,
            "submitTime": iso(self.submitted),
            "lastModifiedTime": iso(ended.unwrap_or(self.submitted)),
            "outputDataConfig": self.s3,
        });
        if let Some(t) = &self.token {
            v["clientRequestToken"] = json!(t);
        }
        if let Some(e) = ended {
            v["endTime"] = json!(iso(e));
        }
        if status == "Failed" {
            v["failureMessage"] = json!(format!("the model failed on its input ({FAIL_JOB})"));
        }
        v
    }
}

/// Formats a time as the service's ISO 8601 timestamps.
fn iso(t: SystemTime) -> String {
    aws_smithy_types::DateTime::from(t)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

/// The async invocations of one server.
pub(crate) struct Jobs {
    list: Mutex<Vec<Job>>,
    delay: Mutex<Duration>,
}

impl Jobs {
    pub(crate) fn new(delay: Duration) -> Self {
        Jobs {
            list: Mutex::new(Vec::new()),
            delay: Mutex::new(delay),
        }
    }

    pub(crate) fn set_delay(&self, d: Duration) {
        *self.delay.lock().unwrap_or_else(|e| e.into_inner()) = d;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a job from a StartAsyncInvoke body in `region`; returns the answer's body or
    /// a validation message naming the field.
    pub(crate) fn start(&self, body: &Value, region: &str) -> Result<Value, String> {
        let model = body
            .get("modelId")
            .and_then(Value::as_str)
            .filter(|m| super::validate::valid_model_id(m))
            .ok_or("modelId: member must be a model id")?;
        let input = body
            .get("modelInput")
            .filter(|v| v.is_object())
            .ok_or("modelInput: member must be a JSON object")?;
        let s3 = body
            .get("outputDataConfig")
            .filter(|c| {
                c.pointer("/s3OutputDataConfig/s3Uri")
                    .and_then(Value::as_str)
                    .is_some_and(valid_s3_uri)
            })
            .ok_or(
                "outputDataConfig.s3OutputDataConfig.s3Uri: member must be an S3 URI \
                 (s3://bucket/prefix)",
            )?;
        let token = body
            .get("clientRequestToken")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut jobs = self.lock();
        if let Some(t) = &token
            && let Some(j) = jobs.iter().find(|j| j.token.as_ref() == Some(t))
        {
            return Ok(json!({ "invocationArn": j.arn }));
        }
        let n = jobs.len() as u64 + 1;
        let arn = format!("arn:aws:bedrock:{region}:123456789012:async-invoke/{n:012x}");
        let model_arn = if model.starts_with("arn:") {
            model.to_owned()
        } else {
            format!("arn:aws:bedrock:{region}::foundation-model/{model}")
        };
        jobs.push(Job {
            arn: arn.clone(),
            model_arn,
            token,
            s3: s3.clone(),
            submitted: SystemTime::now(),
            started: Instant::now(),
            delay: *self.delay.lock().unwrap_or_else(|e| e.into_inner()),
            fails: input.to_string().contains(FAIL_JOB),
        });
        Ok(json!({ "invocationArn": arn }))
    }

    /// Returns the GetAsyncInvoke answer for `arn`, or a validation message.
    pub(crate) fn get(&self, arn: &str) -> Result<Value, String> {
        self.lock()
            .iter()
            .find(|j| j.arn == arn)
            .map(Job::json)
            .ok_or_else(|| format!("invocationArn: no async invocation {arn}"))
    }

    /// Returns the ListAsyncInvokes answer for a query string, or a validation message.
    pub(crate) fn list(&self, query: &str) -> Result<Value, String> {
        let mut status = None;
        let mut max = 1000usize;
        let mut start = 0usize;
        let mut ascending = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "statusEquals" => status = Some(v.to_owned()),
                "maxResults" => {
                    max = v
                        .parse()
                        .ok()
                        .filter(|m| (1..=1000).contains(m))
                        .ok_or("maxResults: must be between 1 and 1000")?;
                }
                "nextToken" => {
                    start = v
                        .parse()
                        .map_err(|_| "nextToken: not a token of this server")?
                }
                "sortOrder" => ascending = v == "Ascending",
                _ => {}
            }
        }
        let jobs = self.lock();
        let mut matching: Vec<Value> = jobs
            .iter()
            .map(Job::json)
            .filter(|j| status.as_deref().is_none_or(|s| j["status"] == s))
            .collect();
        if !ascending {
            matching.reverse();
        }
        let page: Vec<Value> = matching.iter().skip(start).take(max).cloned().collect();
        let mut out = json!({ "asyncInvokeSummaries": page });
        if start + max < matching.len() {
            out["nextToken"] = json!((start + max).to_string());
        }
        Ok(out)
    }
}

/// Returns whether `uri` is an S3 URI as the service's pattern says
/// (`s3://[a-z0-9][.-a-z0-9]{1,61}[a-z0-9](/.*)?`).
fn valid_s3_uri(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("s3://") else {
        return false;
    };
    let bucket = rest.split('/').next().unwrap_or("");
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&bucket.len())
        && bucket.starts_with(ok)
        && bucket.ends_with(ok)
        && bucket.chars().all(|c| ok(c) || c == '.' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(token: Option<&str>, input: Value) -> Value {
        let mut b = json!({
            "modelId": "amazon.nova-reel-v1:1",
            "modelInput": input,
            "outputDataConfig": { "s3OutputDataConfig": { "s3Uri": "s3://my-bucket/out" } },
        });
        if let Some(t) = token {
            b["clientRequestToken"] = json!(t);
        }
        b
    }

    #[test]
    fn jobs_complete_after_the_delay_and_tokens_are_idempotent() {
        let jobs = Jobs::new(Duration::ZERO);
        let a = jobs
            .start(&body(Some("t1"), json!({ "x": 1 })), "us-east-1")
            .unwrap();
        let again = jobs
            .start(&body(Some("t1"), json!({ "x": 1 })), "us-east-1")
            .unwrap();
        assert_eq!(a, again, "the same token starts no second job");
        let arn = a["invocationArn"].as_str().unwrap();
        assert!(arn.starts_with("arn:aws:bedrock:us-east-1:123456789012:async-invoke/"));
        let got = jobs.get(arn).unwrap();
        assert_eq!(got["status"], "Completed");
        assert!(got["endTime"].as_str().unwrap().ends_with('Z'));
        let failed = jobs
            .start(&body(None, json!({ "t": "FAIL_JOB" })), "us-east-1")
            .unwrap();
        let failed = jobs.get(failed["invocationArn"].as_str().unwrap()).unwrap();
        assert_eq!(failed["status"], "Failed");
        jobs.set_delay(Duration::from_secs(3600));
        let slow = jobs.start(&body(None, json!({})), "us-east-1").unwrap();
        assert_eq!(
            jobs.get(slow["invocationArn"].as_str().unwrap()).unwrap()["status"],
            "InProgress"
        );
        let page = jobs.list("statusEquals=Completed").unwrap();
        assert_eq!(page["asyncInvokeSummaries"].as_array().unwrap().len(), 1);
        let first = jobs.list("maxResults=2&sortOrder=Ascending").unwrap();
        assert_eq!(first["asyncInvokeSummaries"][0]["invocationArn"], arn);
        assert_eq!(first["nextToken"], "2");
        let rest = jobs
            .list("maxResults=2&sortOrder=Ascending&nextToken=2")
            .unwrap();
        assert_eq!(rest["asyncInvokeSummaries"].as_array().unwrap().len(), 1);
        assert!(rest.get("nextToken").is_none());
    }

    #[test]
    fn bad_starts_name_the_field() {
        let jobs = Jobs::new(Duration::ZERO);
        let mut b = body(None, json!({}));
        b["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"] = json!("https://x");
        assert!(
            jobs.start(&b, "r")
                .unwrap_err()
                .starts_with("outputDataConfig.s3OutputDataConfig.s3Uri")
        );
        let mut b = body(None, json!({}));
        b["modelInput"] = json!("text");
        assert!(jobs.start(&b, "r").unwrap_err().starts_with("modelInput"));
        assert!(
            jobs.get("arn:nope")
                .unwrap_err()
                .starts_with("invocationArn")
        );
        assert!(
            valid_s3_uri("s3://ab.c-d/x/y")
                && !valid_s3_uri("s3://A/x")
                && !valid_s3_uri("s3://ab")
        );
    }
}
