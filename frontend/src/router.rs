//! The UI's routes over the browser's history: the URL in a signal, `history.pushState` to move,
//! `popstate` for back and forward, and a click listener that keeps same-page links in the page.
//!
//! Hand-written instead of `leptos_router` (about 70 KB of wasm for five routes): the app has
//! `/`, `/bins/{bin}`, `/bins/{bin}/requests/{seq}`, `/webhooks`, and a "Page not found" for
//! every other path (the server answers those with the shell and a `404`). A plain left click
//! on a link to one of these routes changes the page without a reload; anything else (middle
//! or modified clicks, `download` or `target` links, links to the API, captures or an unknown
//! path) is left to the browser.

use leptos::prelude::*;
use wasm_bindgen::{JsCast, JsValue};

/// A page of the UI, as its path names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/`
    Bins,
    /// `/bins/{bin}` and `/bins/{bin}/requests/{seq}`: the bin's id, percent-decoded. One page
    /// for both, so choosing another request changes the URL, not the page.
    Bin(String),
    /// `/webhooks`
    Webhooks,
    NotFound,
}

impl Route {
    /// The route of a path (without its query), as the server's `ui.rs` lists them.
    pub fn of(path: &str) -> Route {
        let mut parts = path.split('/');
        if parts.next() != Some("") {
            return Route::NotFound;
        }
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(""), None, _, _) => Route::Bins,
            (Some("webhooks"), None, _, _) => Route::Webhooks,
            (Some("bins"), Some(bin), rest, seq) if !bin.is_empty() => {
                let shape_ok = match (rest, seq) {
                    (None, _) => true,
                    (Some("requests"), Some(seq)) => !seq.is_empty() && parts.next().is_none(),
                    _ => false,
                };
                if shape_ok {
                    Route::Bin(decode(bin))
                } else {
                    Route::NotFound
                }
            }
            _ => Route::NotFound,
        }
    }
}

/// The `{seq}` of `/bins/{bin}/requests/{seq}`: the request the URL selects.
pub fn request_seq(path: &str) -> Option<u64> {
    path.split_once("/requests/")
        .and_then(|(_, seq)| seq.parse::<u64>().ok())
}

/// The value of `name` in a query string (`a=1&b=2`, without the `?`), percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key) == name).then(|| decode(&value.replace('+', " ")))
    })
}

/// Percent-decodes (as `decodeURIComponent`); a malformed escape or invalid UTF-8 leaves the
/// text as it is.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = |at: usize| bytes.get(at).and_then(|b| char::from(*b).to_digit(16));
        match (hex(i + 1), hex(i + 2)) {
            (Some(high), Some(low)) => out.push((high * 16 + low) as u8),
            _ => return s.to_owned(),
        }
        i += 3;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

/// The current URL's path and query (without the `?`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Url {
    path: String,
    query: String,
}

impl Url {
    fn of(href: &str) -> Url {
        let href = href.split('#').next().unwrap_or_default();
        let (path, query) = href.split_once('?').unwrap_or((href, ""));
        Url {
            path: path.to_owned(),
            query: query.to_owned(),
        }
    }

    fn current() -> Url {
        let location = window().location();
        let path = location.pathname().unwrap_or_default();
        let search = location.search().unwrap_or_default();
        Url {
            path,
            query: search.strip_prefix('?').unwrap_or(&search).to_owned(),
        }
    }
}

/// Where the tab is, and how to move: provided by [`Router`], read with [`use_location`].
#[derive(Clone, Copy)]
pub struct Location {
    url: RwSignal<Url>,
    /// The path alone: only its changes re-run what depends on it.
    path: Memo<String>,
}

impl Location {
    /// The current path (tracked).
    pub fn path(&self) -> String {
        self.path.get()
    }

    /// The current path, not tracked.
    pub fn path_untracked(&self) -> String {
        self.path.get_untracked()
    }

    /// A query parameter of the current URL, not tracked.
    pub fn query_untracked(&self, name: &str) -> Option<String> {
        self.url.with_untracked(|u| query_param(&u.query, name))
    }

    /// Goes to `href` (a path with an optional query) in this page: a new history entry scrolled
    /// to the top, or with `replace` the current entry replaced where the page is scrolled.
    pub fn navigate(&self, href: &str, replace: bool) {
        let url = Url::of(href);
        // Where the tab is already: no new history entry, but a link still scrolls to the top.
        if self.url.with_untracked(|u| *u != url) {
            if let Ok(history) = window().history() {
                let _ = if replace {
                    history.replace_state_with_url(&JsValue::NULL, "", Some(href))
                } else {
                    history.push_state_with_url(&JsValue::NULL, "", Some(href))
                };
            }
            self.url.set(url);
        }
        if !replace {
            window().scroll_to_with_x_and_y(0.0, 0.0);
        }
    }
}

/// The tab's [`Location`]; panics outside a [`Router`].
pub fn use_location() -> Location {
    expect_context::<Location>()
}

/// Tracks the tab's URL and provides [`Location`] to `children`.
pub fn provide_router() -> Location {
    let url = RwSignal::new(Url::current());
    let path = Memo::new(move |_| url.with(|u| u.path.clone()));
    let location = Location { url, path };
    provide_context(location);
    // Back and forward: the browser has changed the URL already (and restores the scroll).
    let pop = window_event_listener(leptos::ev::popstate, move |_| url.set(Url::current()));
    // A plain left click on a link to a page of this app: no reload.
    let click = window_event_listener(leptos::ev::click, move |ev| {
        if let Some(href) = in_app_link(&ev) {
            ev.prevent_default();
            location.navigate(&href, false);
        }
    });
    on_cleanup(move || {
        pop.remove();
        click.remove();
    });
    location
}

/// The `href` of the link `ev` clicks when the page should handle it.
fn in_app_link(ev: &web_sys::MouseEvent) -> Option<String> {
    if ev.default_prevented()
        || ev.button() != 0
        || ev.meta_key()
        || ev.alt_key()
        || ev.ctrl_key()
        || ev.shift_key()
    {
        return None;
    }
    let link = ev
        .target()?
        .dyn_into::<web_sys::Element>()
        .ok()?
        .closest("a[href]")
        .ok()??;
    let target = link.get_attribute("target").unwrap_or_default();
    if link.has_attribute("download")
        || !(target.is_empty() || target == "_self")
        || link
            .get_attribute("rel")
            .is_some_and(|r| r.split_ascii_whitespace().any(|p| p == "external"))
    {
        return None;
    }
    let href = link.get_attribute("href")?;
    let local = href.starts_with('/') && !href.starts_with("//");
    (local && Route::of(&Url::of(&href).path) != Route::NotFound).then_some(href)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_the_servers_pages() {
        assert_eq!(Route::of("/"), Route::Bins);
        assert_eq!(Route::of("/webhooks"), Route::Webhooks);
        assert_eq!(Route::of("/bins/ci"), Route::Bin("ci".into()));
        assert_eq!(Route::of("/bins/ci/requests/12"), Route::Bin("ci".into()));
        assert_eq!(Route::of("/bins/a%20b"), Route::Bin("a b".into()));
        for other in [
            "",
            "/bins",
            "/bins/",
            "/bins/ci/",
            "/bins/ci/requests",
            "/bins/ci/requests/",
            "/bins/ci/requests/1/x",
            "/bins/ci/other/1",
            "/webhooks/",
            "/webhooks/x",
            "/api/bins",
            "/b/ci",
            "/nope",
        ] {
            assert_eq!(Route::of(other), Route::NotFound, "{other}");
        }
    }

    #[test]
    fn the_selected_request_is_in_the_path() {
        assert_eq!(request_seq("/bins/ci/requests/12"), Some(12));
        assert_eq!(request_seq("/bins/ci"), None);
        assert_eq!(request_seq("/bins/ci/requests/x"), None);
    }

    #[test]
    fn query_parameters_are_decoded() {
        let q = "a=1&message=msg_2%3Ax&empty&plus=a+b";
        assert_eq!(query_param(q, "message").as_deref(), Some("msg_2:x"));
        assert_eq!(query_param(q, "a").as_deref(), Some("1"));
        assert_eq!(query_param(q, "empty").as_deref(), Some(""));
        assert_eq!(query_param(q, "plus").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "nope"), None);
        assert_eq!(query_param("", "a"), None);
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
        assert_eq!(decode("%C3%A9"), "é");
        assert_eq!(decode("%FF"), "%FF");
    }

    #[test]
    fn a_href_splits_into_path_and_query() {
        assert_eq!(
            Url::of("/bins/x?message=m#top"),
            Url {
                path: "/bins/x".into(),
                query: "message=m".into()
            }
        );
        assert_eq!(Url::of("/webhooks").query, "");
    }
}
