//! A local HTTP/1.1 server for tests of keel's downloads (the Hub, data sets): a handler decides
//! each response; the server adds HEAD and single `Range: bytes=a-b` support, closes every
//! connection after one response, and records every request.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request as the server read it.
#[derive(Clone, Debug)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The path with its query, as sent (`/org/name/resolve/main/config.json`).
    pub path: String,
    /// Header names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

/// What the handler answers.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code (200, 302, 401, 404, ...).
    pub status: u16,
    /// Extra headers; `Content-Length` and `Connection` are added by the server.
    pub headers: Vec<(String, String)>,
    /// The full body; the server cuts it for HEAD and ranges.
    pub body: Vec<u8>,
}

impl Response {
    /// A 200 with this body.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Response { status: 200, headers: Vec::new(), body: body.into() }
    }

    /// A response with this status and a short text body.
    pub fn status(status: u16, text: &str) -> Self {
        Response { status, headers: Vec::new(), body: text.as_bytes().to_vec() }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// A server on 127.0.0.1 with an OS-chosen port; it lives as long as the test process.
pub struct TestServer {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl TestServer {
    /// Starts serving `handler` on a background thread.
    pub fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (handler, log) = (handler.clone(), log.clone());
                std::thread::spawn(move || {
                    // A client that hangs up mid-request is the client's business, not the test's.
                    let _ = serve_one(stream, &*handler, &log);
                });
            }
        });
        TestServer { port, requests }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request served so far, in order of arrival.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve_one(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Request>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let request = Request { method, path, headers };
    log.lock().unwrap().push(request.clone());
    let mut response = handler(&request);

    let total = response.body.len();
    if response.status == 200 {
        if let Some((start, end)) = request.header("range").and_then(|r| parse_range(r, total)) {
            response.status = 206;
            response.headers.push(("Content-Range".into(), format!("bytes {start}-{end}/{total}")));
            response.body = response.body[start..=end].to_vec();
        }
    }
    let mut out = format!("HTTP/1.1 {} {}\r\n", response.status, reason(response.status));
    for (k, v) in &response.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", response.body.len()));
    let mut stream = stream;
    stream.write_all(out.as_bytes())?;
    if request.method != "HEAD" {
        stream.write_all(&response.body)?;
    }
    stream.flush()
}

/// `bytes=a-b` or `bytes=a-` within a body of `total` bytes, as an inclusive range.
fn parse_range(header: &str, total: usize) -> Option<(usize, usize)> {
    let (a, b) = header.strip_prefix("bytes=")?.split_once('-')?;
    let start: usize = a.trim().parse().ok()?;
    let end = if b.trim().is_empty() {
        total.checked_sub(1)?
    } else {
        b.trim().parse::<usize>().ok()?.min(total.checked_sub(1)?)
    };
    (start <= end).then_some((start, end))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn fetch(url: &str, extra: &str) -> String {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut s = TcpStream::connect(host).unwrap();
        write!(s, "GET /{path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_bodies_ranges_and_statuses_and_records_requests() {
        let server = TestServer::start(|r| match r.path.as_str() {
            "/file" => Response::ok("0123456789").with_header("ETag", "\"abc\""),
            _ => Response::status(404, "no such file"),
        });
        let full = fetch(&format!("{}/file", server.url()), "");
        assert!(full.starts_with("HTTP/1.1 200 OK") && full.ends_with("\r\n\r\n0123456789"), "{full}");
        assert!(full.contains("ETag: \"abc\""));
        let part = fetch(&format!("{}/file", server.url()), "Range: bytes=2-4\r\n");
        assert!(part.starts_with("HTTP/1.1 206") && part.contains("Content-Range: bytes 2-4/10"), "{part}");
        assert!(part.ends_with("\r\n\r\n234"), "{part}");
        assert!(fetch(&format!("{}/missing", server.url()), "").starts_with("HTTP/1.1 404"));
        let seen = server.requests();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1].header("Range"), Some("bytes=2-4"));
    }
}
