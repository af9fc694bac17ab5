//! The S3 backend (rust-s3, path-style requests), for any S3-compatible server.
use crate::error::{ObjectStoreError, Result};
use crate::key::{validate_key, validate_metadata, validate_prefix};
use crate::{Metadata, Object, ObjectMeta, ObjectStore};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use s3::command::Command;
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::request::tokio_backend::ReqwestRequest;
use s3::request::Request as _;
use s3::{Bucket, BucketConfiguration, Region};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::time::Duration;

/// Connection settings for [`S3Store`]. `Debug` never prints the credentials.
#[derive(Clone)]
pub struct S3Config {
    /// `http(s)://host:port` of the S3-compatible server.
    pub endpoint: String,
    /// Signing region (`us-east-1` for most S3-compatible servers).
    pub region: String,
    pub bucket: String,
    /// Both keys or neither (anonymous requests).
    pub access_key_id: Option<SecretString>,
    pub secret_access_key: Option<SecretString>,
    /// Per-request timeout.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "***"))
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl S3Config {
    /// Settings with explicit credentials and a 30 s request timeout.
    pub fn new(
        endpoint: impl Into<String>,
        region: impl Into<String>,
        bucket: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            region: region.into(),
            bucket: bucket.into(),
            access_key_id: Some(SecretString::from(access_key_id.into())),
            secret_access_key: Some(SecretString::from(secret_access_key.into())),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// An S3 bucket reached with path-style URLs (`{endpoint}/{bucket}/{key}`).
///
/// rust-s3 itself retries a request once after a transport error (1 s pause); everything
/// else is left to the caller, guided by [`ObjectStoreError::is_retryable`].
pub struct S3Store {
    bucket: Box<Bucket>,
    name: String,
    endpoint: String,
    region: Region,
    credentials: Credentials,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.name)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Builds the client; no request is sent (see [`ObjectStore::ensure_bucket`]).
    pub fn new(config: S3Config) -> Result<Self> {
        let endpoint = config.endpoint.trim_end_matches('/').to_owned();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(ObjectStoreError::Config(format!(
                "S3 endpoint {endpoint:?} must start with http:// or https://"
            )));
        }
        if config.bucket.is_empty() {
            return Err(ObjectStoreError::Config("S3 bucket name is empty".into()));
        }
        let credentials = match (&config.access_key_id, &config.secret_access_key) {
            (Some(a), Some(s)) => Credentials::new(
                Some(a.expose_secret()),
                Some(s.expose_secret()),
                None,
                None,
                None,
            ),
            (None, None) => Credentials::anonymous(),
            _ => {
                return Err(ObjectStoreError::Config(
                    "set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or neither".into(),
                ))
            }
        }
        .map_err(|e| ObjectStoreError::Config(format!("S3 credentials: {e}")))?;
        let region = Region::Custom {
            region: config.region.clone(),
            endpoint: endpoint.clone(),
        };
        let bucket = Bucket::new(&config.bucket, region.clone(), credentials.clone())
            .map_err(|e| map_err("configure", "", e))?
            .with_path_style()
            .with_request_timeout(config.request_timeout)
            .map_err(|e| map_err("configure", "", e))?;
        Ok(Self {
            bucket,
            name: config.bucket,
            endpoint,
            region,
            credentials,
        })
    }

    /// [`S3Store::new`] followed by [`ObjectStore::ensure_bucket`] (creates the bucket when missing).
    pub async fn connect(config: S3Config) -> Result<Self> {
        let store = Self::new(config)?;
        store.ensure_bucket().await?;
        Ok(store)
    }

    pub fn bucket_name(&self) -> &str {
        &self.name
    }

    /// One ListObjectsV2 page. Sent by hand (not `Bucket::list_page`) so that an error
    /// answer is classified by its status instead of failing as unparseable XML.
    async fn list_page(
        &self,
        prefix: &str,
        continuation_token: Option<String>,
        max_keys: usize,
    ) -> Result<s3::serde_types::ListBucketResult> {
        let command = Command::ListObjectsV2 {
            prefix: prefix.to_owned(),
            delimiter: None,
            continuation_token,
            start_after: None,
            max_keys: Some(max_keys),
        };
        let request = ReqwestRequest::new(&self.bucket, "/", command)
            .await
            .map_err(|e| map_err("list", prefix, e))?;
        let response = request
            .response_data(false)
            .await
            .map_err(|e| map_err("list", prefix, e))?;
        check_status(&self.name, "list", prefix, &response)?;
        quick_xml::de::from_reader(response.as_slice()).map_err(|e| ObjectStoreError::Protocol {
            op: "list",
            message: format!("ListObjectsV2 answer: {e}"),
        })
    }
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    fn backend(&self) -> &'static str {
        "s3"
    }

    fn location(&self) -> String {
        format!("s3://{} at {}", self.name, self.endpoint)
    }

    async fn ensure_bucket(&self) -> Result<()> {
        match self.list_page("", None, 1).await {
            Ok(_) => return Ok(()),
            Err(ObjectStoreError::NoSuchBucket { .. }) => {}
            Err(e) => return Err(e),
        }
        let response = Bucket::create_with_path_style(
            &self.name,
            self.region.clone(),
            self.credentials.clone(),
            BucketConfiguration::default(),
        )
        .await
        .map_err(|e| map_err("create bucket", "", e))?;
        match response.response_code {
            200..=299 => {
                tracing::info!(bucket = %self.name, "created bucket");
                Ok(())
            }
            // Someone else created it meanwhile.
            409 if response.response_text.contains("BucketAlreadyOwnedByYou")
                || response.response_text.contains("BucketAlreadyExists") =>
            {
                Ok(())
            }
            status => Err(classify(
                &self.name,
                "create bucket",
                "",
                status,
                &response.response_text,
            )),
        }
    }

    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
        metadata: &Metadata,
    ) -> Result<()> {
        validate_key(key)?;
        validate_metadata(content_type, metadata)?;
        let mut request = self
            .bucket
            .put_object_builder(key, &bytes)
            .with_content_type(content_type);
        for (name, value) in metadata {
            request = request.with_metadata(name, value).map_err(|e| {
                ObjectStoreError::InvalidMetadata {
                    name: name.clone(),
                    reason: if matches!(e, S3Error::InvalidHeaderValue(_)) {
                        "not a valid header value"
                    } else {
                        "not a valid header name"
                    },
                }
            })?;
        }
        let response = request
            .execute()
            .await
            .map_err(|e| map_err("put", key, e))?;
        check_status(&self.name, "put", key, &response)
    }

    async fn get(&self, key: &str) -> Result<Option<Object>> {
        validate_key(key)?;
        let response = self
            .bucket
            .get_object(key)
            .await
            .map_err(|e| map_err("get", key, e))?;
        if response.status_code() == 404 && error_code(response.as_slice()) != "NoSuchBucket" {
            return Ok(None);
        }
        check_status(&self.name, "get", key, &response)?;
        let headers = response.headers();
        let bytes = response.bytes().clone();
        let meta = meta_from_headers(key, bytes.len() as u64, &headers);
        Ok(Some(Object { meta, bytes }))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        validate_key(key)?;
        // A HEAD answer has no body, so a missing bucket also reads as "no such object".
        let (head, status) = self
            .bucket
            .head_object(key)
            .await
            .map_err(|e| map_err("head", key, e))?;
        match status {
            200..=299 => {}
            404 => return Ok(None),
            status => return Err(classify(&self.name, "head", key, status, "")),
        }
        let last_modified = head
            .last_modified
            .as_deref()
            .map(parse_http_date)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
        Ok(Some(ObjectMeta {
            key: key.to_owned(),
            size: head
                .content_length
                .and_then(|l| u64::try_from(l).ok())
                .unwrap_or(0),
            last_modified,
            content_type: head.content_type,
            metadata: head
                .metadata
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            etag: head.e_tag.map(|e| e.trim_matches('"').to_owned()),
        }))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let response = self
            .bucket
            .delete_object(key)
            .await
            .map_err(|e| map_err("delete", key, e))?;
        if response.status_code() == 404 && error_code(response.as_slice()) != "NoSuchBucket" {
            return Ok(()); // already gone
        }
        check_status(&self.name, "delete", key, &response)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.list_page(prefix, token.take(), 1000).await?;
            for o in page.contents {
                out.push(ObjectMeta {
                    last_modified: parse_iso_date(&o.last_modified),
                    key: o.key,
                    size: o.size,
                    content_type: None,
                    metadata: Metadata::new(),
                    etag: o.e_tag.map(|e| e.trim_matches('"').to_owned()),
                });
            }
            match page.next_continuation_token {
                Some(next) if page.is_truncated && !next.is_empty() => token = Some(next),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

fn check_status(
    bucket: &str,
    op: &'static str,
    key: &str,
    response: &s3::request::ResponseData,
) -> Result<()> {
    let status = response.status_code();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body = String::from_utf8_lossy(response.as_slice());
    Err(classify(bucket, op, key, status, &body))
}

/// The `<Code>` of an S3 XML error body, `""` when there is none.
fn error_code(body: &[u8]) -> String {
    let body = String::from_utf8_lossy(body);
    body.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.trim().to_owned())
        .unwrap_or_default()
}

fn classify(
    bucket: &str,
    op: &'static str,
    key: &str,
    status: u16,
    body: &str,
) -> ObjectStoreError {
    let code = error_code(body.as_bytes());
    match status {
        401 | 403 => ObjectStoreError::Auth {
            op,
            status,
            code: if code.is_empty() {
                "AccessDenied".to_owned()
            } else {
                code
            },
        },
        404 if code == "NoSuchBucket" => ObjectStoreError::NoSuchBucket {
            bucket: bucket.to_owned(),
        },
        _ => ObjectStoreError::Http {
            op,
            key: key.to_owned(),
            status,
            code,
        },
    }
}

/// rust-s3 errors: transport failures are retryable, the rest are configuration or
/// protocol problems. (`HttpFailWithBody` only appears if some crate in the build turns
/// on rust-s3's `fail-on-err` feature.)
fn map_err(op: &'static str, key: &str, e: S3Error) -> ObjectStoreError {
    match e {
        S3Error::Reqwest(e) if e.is_timeout() => ObjectStoreError::Timeout { op },
        S3Error::Reqwest(e) if e.is_builder() => ObjectStoreError::Config(e.to_string()),
        S3Error::Reqwest(e) => ObjectStoreError::Transport {
            op,
            message: error_chain(&e),
        },
        S3Error::Io(e) => ObjectStoreError::Transport {
            op,
            message: e.to_string(),
        },
        S3Error::HttpFailWithBody(status, body) => classify("", op, key, status, &body),
        e @ (S3Error::Credentials(_)
        | S3Error::Region(_)
        | S3Error::UrlParse(_)
        | S3Error::InvalidHeaderValue(_)
        | S3Error::InvalidHeaderName(_)
        | S3Error::Http(_)) => ObjectStoreError::Config(e.to_string()),
        e => ObjectStoreError::Protocol {
            op,
            message: e.to_string(),
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn meta_from_headers(key: &str, size: u64, headers: &HashMap<String, String>) -> ObjectMeta {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let metadata = headers
        .iter()
        .filter_map(|(k, v)| {
            let k = k.to_ascii_lowercase();
            k.strip_prefix("x-amz-meta-")
                .map(|name| (name.to_owned(), v.clone()))
        })
        .collect();
    ObjectMeta {
        key: key.to_owned(),
        size,
        last_modified: get("last-modified")
            .as_deref()
            .map(parse_http_date)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        content_type: get("content-type"),
        metadata,
        etag: get("etag").map(|e| e.trim_matches('"').to_owned()),
    }
}

/// `Last-Modified` header (RFC 7231 IMF-fixdate, e.g. `Wed, 21 Oct 2015 07:28:00 GMT`).
fn parse_http_date(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc2822(s)
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(|_| {
            tracing::debug!(value = s, "unparseable Last-Modified header");
            DateTime::<Utc>::UNIX_EPOCH
        })
}

/// `LastModified` in a listing (ISO 8601, e.g. `2015-10-21T07:28:00.000Z`).
fn parse_iso_date(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(|_| {
            tracing::debug!(value = s, "unparseable LastModified in listing");
            DateTime::<Utc>::UNIX_EPOCH
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_dates() {
        let d = parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(d.to_rfc3339(), "2015-10-21T07:28:00+00:00");
        let d = parse_iso_date("2015-10-21T07:28:00.000Z");
        assert_eq!(d.to_rfc3339(), "2015-10-21T07:28:00+00:00");
    }

    #[test]
    fn classifies_error_bodies() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code></Error>";
        assert!(matches!(
            classify("b", "get", "k", 404, body),
            ObjectStoreError::NoSuchBucket { .. }
        ));
        let e = classify(
            "b",
            "put",
            "k",
            403,
            "<Error><Code>SignatureDoesNotMatch</Code></Error>",
        );
        assert!(
            matches!(&e, ObjectStoreError::Auth { code, .. } if code == "SignatureDoesNotMatch")
        );
        assert!(!e.is_retryable());
        assert!(classify("b", "put", "k", 503, "").is_retryable());
        assert!(!classify("b", "put", "k", 400, "").is_retryable());
    }

    #[test]
    fn config_debug_hides_secrets() {
        let c = S3Config::new(
            "http://127.0.0.1:1",
            "us-east-1",
            "b",
            "AKIDSECRET",
            "SUPERSECRET",
        );
        let s = format!("{c:?}");
        assert!(
            !s.contains("SUPERSECRET") && !s.contains("AKIDSECRET"),
            "{s}"
        );
    }
}
