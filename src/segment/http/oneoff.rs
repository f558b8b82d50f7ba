//! One-off requests for the CLI's commands against a running spheroseg (`submit`, `status`,
//! `export`, `db backup` ...): a fresh client per command, an optional bearer token, the status
//! and body back, or why nothing answered. Kept beside the ML client so reqwest stays in
//! `segment/http`.

use std::time::Duration;

use super::install_crypto_provider;

/// A plain GET with an optional bearer token, for CLI commands that talk to a running spheroseg
/// (reqwest stays in this file). Returns the status and the body, or why there was no answer.
pub async fn get(
    url: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let req = one_off(timeout)?.get(url);
    answer(req, url, token).await
}

/// POSTs one image as `multipart/form-data` (part `image`, then text `fields`) with extra
/// `headers` (for the CLI's `submit`): the status and body, or why nothing answered (a refused
/// connection, a timeout, a connection closed before the answer), which a caller may retry.
pub async fn post_image(
    url: &str,
    token: Option<&str>,
    image: (&str, Vec<u8>),
    fields: &[(&str, String)],
    headers: &[(&str, String)],
    timeout: Duration,
) -> Result<(u16, String), String> {
    let mut form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(image.1).file_name(image.0.to_owned()),
    );
    for (name, value) in fields {
        form = form.text(name.to_string(), value.clone());
    }
    let mut req = one_off(timeout)?.post(url).multipart(form);
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    answer(req, url, token).await
}

/// A request with an optional JSON body (sent as `application/json`) and bearer token, for the
/// CLI's commands against a running spheroseg: the status and the body, or why nothing answered.
pub async fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    json: Option<String>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    answer(request(method, url, json, timeout)?, url, token).await
}

/// [`call`], the body written to `file` as it arrives when the status is 200 (a large export or
/// backup never sits in memory). Returns the status, and the body of any other status.
pub async fn download(
    method: &str,
    url: &str,
    token: Option<&str>,
    json: Option<String>,
    file: &std::path::Path,
    timeout: Duration,
) -> Result<(u16, String), String> {
    use std::io::Write;
    let mut req = request(method, url, json, timeout)?;
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| format!("{url} did not answer: {e}"))?;
    let status = resp.status().as_u16();
    if status != 200 {
        let body = resp.text().await.unwrap_or_default();
        return Ok((status, body));
    }
    let mut out =
        std::fs::File::create(file).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("{url} did not answer whole: {e}"))?
    {
        out.write_all(&chunk)
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    }
    out.sync_all()
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok((status, String::new()))
}

fn request(
    method: &str,
    url: &str,
    json: Option<String>,
    timeout: Duration,
) -> Result<reqwest::RequestBuilder, String> {
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|e| format!("{method} is not an HTTP method: {e}"))?;
    let mut req = one_off(timeout)?.request(method, url);
    if let Some(body) = json {
        req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
    }
    Ok(req)
}

/// A client for one CLI request.
fn one_off(timeout: Duration) -> Result<reqwest::Client, String> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Sends `req` (with the token, if any): the status and the whole body.
async fn answer(
    mut req: reqwest::RequestBuilder,
    url: &str,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{url} did not answer: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .text()
        .await
        .map_err(|e| format!("{url} did not answer whole: {e}"))?;
    Ok((status, body))
}
