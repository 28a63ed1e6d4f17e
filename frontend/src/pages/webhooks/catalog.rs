//! The event catalog at the bottom of the page: each event with its description and example payload.

use super::*;

/// An event's description, its `backticked` words shown as code.
#[component]
pub(super) fn Described(text: String) -> impl IntoView {
    crate::units::backticks(&text)
        .into_iter()
        .map(|(code, part)| {
            if code {
                view! { <code>{part}</code> }.into_any()
            } else {
                part.into_any()
            }
        })
        .collect_view()
}

/// Every event of the catalog with its description and example payload, as the seed's page
/// lists them at the bottom.
#[component]
pub(super) fn EventCatalog(data: Data) -> impl IntoView {
    view! {
        <section class="catalog" aria-labelledby="catalog-title">
            <h2 id="catalog-title">"Events"</h2>
            <p class="muted">"Every event a webhook can subscribe to, with the payload it sends."</p>
            {move || match data.events.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e.message}</p> }.into_any(),
                Some(Ok(list)) => list
                    .into_iter()
                    .map(|ev| {
                        let text = ev.example.text().to_owned();
                        let anchor = format!("event-{}", ev.slug);
                        view! {
                            <article class="event card" id=anchor>
                                <h3>{ev.name}" "<code class="slug">{ev.slug}</code></h3>
                                <p><Described text=ev.description/></p>
                                <details>
                                    <summary>"Example payload"</summary>
                                    <JsonView text=text/>
                                </details>
                            </article>
                        }
                    })
                    .collect_view()
                    .into_any(),
            }}
        </section>
    }
}
