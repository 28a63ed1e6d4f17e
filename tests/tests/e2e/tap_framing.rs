//! The connection tap under hostile framing: each stored request keeps its own header lines,
//! whatever the bytes before it on the connection, and says whether they are exact.

use serde_json::{Value, json};

use crate::support::{TestServer, raw_http};

/// The header lines of a captured request as `(name, value)` pairs, in stored order.
fn header_lines(req: &Value) -> Vec<(String, String)> {
    req["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_owned(),
                h["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// Oldest first.
async fn requests(s: &TestServer, bin: &str) -> Vec<Value> {
    let (status, page) = s.get_json(&format!("/api/bins/{bin}/requests")).await;
    assert_eq!(status, 200);
    let mut reqs = page["requests"].as_array().unwrap().clone();
    reqs.reverse();
    reqs
}

/// A chunked body ending `0\r\n\n`: for hyper the bare LF starts the trailer section, which runs
/// to the next CRLF CRLF, so the "request" after it is trailer bytes of the first one. The tap
/// used to see a new head there and hand its headers to the next real request (and the one after
/// that got its predecessor's).
#[tokio::test]
async fn a_bare_lf_in_the_trailer_section_does_not_move_headers_to_other_requests() {
    let s = TestServer::start().await;
    s.put_bin("tap-a", json!({})).await;
    s.put_bin("tap-b", json!({})).await;
    let wire = b"POST /b/tap-a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
        3\r\nabc\r\n0\r\n\n\
        POST /b/tap-b HTTP/1.1\r\nAuthorization: Bearer meant-for-a\r\n\r\n\
        POST /b/tap-b HTTP/1.1\r\nHost: h\r\nX-Real: 1\r\nContent-Length: 2\r\n\r\nhi\
        POST /b/tap-b HTTP/1.1\r\nHost: h\r\nX-Real: 2\r\nContent-Length: 2\r\n\
        Connection: close\r\n\r\nho";
    let resp = raw_http(s.addr, wire).await;
    let text = String::from_utf8_lossy(&resp);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");

    let a = requests(&s, "tap-a").await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["body"], "abc");
    assert_eq!(
        header_lines(&a[0]),
        pairs(&[("Host", "h"), ("Transfer-Encoding", "chunked")])
    );

    let b = requests(&s, "tap-b").await;
    assert_eq!(b.len(), 2, "{b:#?}");
    assert_eq!(b[0]["body"], "hi");
    assert_eq!(
        header_lines(&b[0]),
        pairs(&[("Host", "h"), ("X-Real", "1"), ("Content-Length", "2")])
    );
    assert_eq!(b[1]["body"], "ho");
    assert_eq!(
        header_lines(&b[1]),
        pairs(&[
            ("Host", "h"),
            ("X-Real", "2"),
            ("Content-Length", "2"),
            ("Connection", "close"),
        ])
    );
    // hyper framed the connection as the tap did, so all three are exact.
    for r in a.iter().chain(&b) {
        assert_eq!(r["headers_exact"], true, "{r:#}");
    }
}

/// Trailer lines may hold a bare LF (hyper ends them at CRLF only): the tap follows that too.
#[tokio::test]
async fn trailers_with_bare_lfs_inside_are_skipped_like_hyper_does() {
    let s = TestServer::start().await;
    s.put_bin("tap-t", json!({})).await;
    let wire = b"PUT /b/tap-t/1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
        2;name=val\r\nok\r\n0\r\n\nGET /b/tap-t/x HTTP/1.1\r\nX-Fake: 1\r\n\r\n\
        GET /b/tap-t/2 HTTP/1.1\r\nhost: h\r\nX-Dup: 1\r\nx-dup: 2\r\nConnection: close\r\n\r\n";
    let resp = raw_http(s.addr, wire).await;
    let text = String::from_utf8_lossy(&resp);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    let reqs = requests(&s, "tap-t").await;
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1]["path"], "/2");
    assert_eq!(
        header_lines(&reqs[1]),
        pairs(&[
            ("host", "h"),
            ("X-Dup", "1"),
            ("x-dup", "2"),
            ("Connection", "close"),
        ])
    );
    assert_eq!(reqs[1]["headers_exact"], true);
}

/// Over HTTP/2 there is no HTTP/1 head to keep: the headers are hyper's, and say so.
#[tokio::test]
async fn requests_without_an_exact_head_say_so() {
    let s = TestServer::start().await;
    s.put_bin("tap-h2", json!({})).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = client
        .post(s.url("/b/tap-h2"))
        .header("X-Mixed-Case", "v")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let reqs = requests(&s, "tap-h2").await;
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0]["headers_exact"], false);
    assert!(
        header_lines(&reqs[0]).contains(&("x-mixed-case".to_owned(), "v".to_owned())),
        "{:#}",
        reqs[0]
    );
}
