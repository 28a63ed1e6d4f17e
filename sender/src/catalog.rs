//! The event catalog: which events exist, what they mean, an example payload and a JSON Schema
//! of each.
//!
//! The built-in catalog follows Ultimate Multisite's webhook events (2.4.10, and the events newer
//! releases add): flat JSON objects whose keys are prefixed by field group (`customer_`,
//! `membership_`, `payment_`, `site_`, `domain_`, the billing address), in the order the plugin's
//! `wu_do_event` callers merge the groups, plus `wu_version`, which the plugin's
//! `Event_Manager::do_event` adds to real events only: "Send Test Event"
//! (`Webhook_Manager::send_test_event`) sends the registered example without it, and so does
//! [`Event::test_example_json`]. No old-name aliases: the plugin registers `deprecated_args` for
//! `payment_received` and `domain_created` but never merges them into a payload. Each field is
//! declared once below with an example value and a schema fragment; an event's example and schema
//! are both built from the same list, so they cannot drift apart silently (and the tests check
//! every example against its schema).
//!
//! A user catalog (`--catalog FILE`) replaces the built-in one. Its format is the same as
//! `GET /api/events`: `{"events": [{"slug", "name", "description", "example", "schema"?}]}` (a
//! bare array is accepted too). Every problem is reported with the file, the event and what is
//! wrong.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// The plugin version we pretend to be in built-in examples.
pub const WU_VERSION: &str = "2.4.10";

/// Why a catalog could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {}{problem}", event.as_ref().map(|e| format!("event `{e}`: ")).unwrap_or_default())]
pub struct CatalogError {
    /// The file (or other source) read.
    pub source_name: String,
    /// The event at fault, when one is.
    pub event: Option<String>,
    pub problem: String,
}

/// One event of the catalog.
#[derive(Debug)]
pub struct Event {
    pub slug: String,
    pub name: String,
    pub description: String,
    /// The example as the catalog lists it (`GET /api/events`) and a test send carries it: a
    /// built-in event's without `wu_version`, like the plugin's event list and its "Send Test
    /// Event"; keys sorted.
    pub example: Value,
    /// The example as an emitted (real) event sends it: the JSON text in its own key order (the
    /// plugin's for built-in events, with the `wu_version` it adds to real events last; the
    /// file's for a user catalog).
    pub example_json: Box<RawValue>,
    /// [`Event::example`] as a test send carries it, in the same key order as
    /// [`Event::example_json`]: a built-in event's without `wu_version`, a user catalog's as
    /// written.
    pub test_example_json: Box<RawValue>,
    pub schema: Option<Value>,
    validator: Option<jsonschema::Validator>,
}

impl Event {
    /// Checks a payload against the event's schema; the messages name the JSON pointer at fault.
    /// An event without a schema accepts anything.
    pub fn check(&self, payload: &Value) -> Result<(), Vec<String>> {
        let Some(validator) = &self.validator else {
            return Ok(());
        };
        let errors: Vec<String> = validator
            .iter_errors(payload)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!("at `{}`: {e}", if at.is_empty() { "/" } else { &at })
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    pub fn to_out(&self) -> api::EventOut {
        api::EventOut {
            slug: self.slug.clone(),
            name: self.name.clone(),
            description: self.description.clone(),
            example: self.example.clone(),
            schema: self.schema.clone(),
        }
    }
}

/// The events a sender knows, in display order. Immutable once loaded; shared as `Arc<Catalog>`.
#[derive(Debug)]
pub struct Catalog {
    events: Vec<Arc<Event>>,
    by_slug: HashMap<String, usize>,
}

/// The file format: the same fields as `api::EventOut`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventFile {
    slug: String,
    name: String,
    #[serde(default)]
    description: String,
    example: Value,
    #[serde(default)]
    schema: Option<Value>,
}

/// A wrapped catalog file's events, as text.
#[derive(Deserialize)]
struct WrappedText<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// An event's example, as text.
#[derive(Deserialize)]
struct ExampleText<'a> {
    #[serde(borrow)]
    example: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CatalogFile {
    Wrapped { events: Vec<Value> },
    Bare(Vec<Value>),
}

impl Catalog {
    /// The Ultimate Multisite events.
    pub fn builtin() -> Self {
        let events = builtin_events()
            .into_iter()
            .map(|e| {
                let payload = e.payload();
                let schema = e.schema();
                let validator = jsonschema::validator_for(&schema)
                    .expect("built-in schemas are valid (tested)");
                Event {
                    slug: e.slug.to_owned(),
                    name: e.name.to_owned(),
                    description: e.description.to_owned(),
                    example_json: e.payload_json(true),
                    test_example_json: e.payload_json(false),
                    example: payload,
                    schema: Some(schema),
                    validator: Some(validator),
                }
            })
            .collect();
        Self::new(events)
    }

    fn new(events: Vec<Event>) -> Self {
        let by_slug = events
            .iter()
            .enumerate()
            .map(|(i, e)| (e.slug.clone(), i))
            .collect();
        Self {
            events: events.into_iter().map(Arc::new).collect(),
            by_slug,
        }
    }

    /// Loads a user catalog from a JSON file.
    pub fn from_file(path: &Path) -> Result<Self, CatalogError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| CatalogError {
            source_name: name.clone(),
            event: None,
            problem: format!("cannot read: {e}"),
        })?;
        Self::from_json(&name, &text)
    }

    /// Parses a user catalog; `source_name` is used in error messages.
    pub fn from_json(source_name: &str, text: &str) -> Result<Self, CatalogError> {
        let fail = |event: Option<String>, problem: String| CatalogError {
            source_name: source_name.to_owned(),
            event,
            problem,
        };
        let file: CatalogFile = serde_json::from_str(text).map_err(|e| {
            fail(
                None,
                format!(
                    "not a catalog (expected {{\"events\": [...]}} or an array of events): {e}"
                ),
            )
        })?;
        let raw = match file {
            CatalogFile::Wrapped { events } | CatalogFile::Bare(events) => events,
        };
        // The same events as JSON text, for their examples in the file's key order.
        let texts: Vec<&RawValue> = match serde_json::from_str::<WrappedText<'_>>(text) {
            Ok(w) => w.events,
            Err(_) => serde_json::from_str(text).map_err(|e| fail(None, e.to_string()))?,
        };
        if raw.is_empty() {
            return Err(fail(None, "has no events".into()));
        }
        let mut events: Vec<Event> = Vec::with_capacity(raw.len());
        for (i, (value, event_text)) in raw.into_iter().zip(texts).enumerate() {
            // Name the event by its slug when it has one, else by its position.
            let label = value
                .get("slug")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("#{}", i + 1));
            let e: EventFile = serde_json::from_value(value)
                .map_err(|e| fail(Some(label.clone()), e.to_string()))?;
            if !valid_slug(&e.slug) {
                return Err(fail(
                    Some(label),
                    "slug must match [a-z0-9][a-z0-9_.-]{0,63}".into(),
                ));
            }
            if events.iter().any(|x| x.slug == e.slug) {
                return Err(fail(Some(label), "slug appears twice".into()));
            }
            if e.name.trim().is_empty() {
                return Err(fail(Some(label), "name is empty".into()));
            }
            if !e.example.is_object() {
                return Err(fail(Some(label), "example must be a JSON object".into()));
            }
            let validator = match &e.schema {
                None => None,
                Some(schema) => Some(jsonschema::validator_for(schema).map_err(|err| {
                    fail(
                        Some(label.clone()),
                        format!("schema is not a valid JSON Schema: {err}"),
                    )
                })?),
            };
            let example_json = serde_json::from_str::<ExampleText<'_>>(event_text.get())
                .map(|t| t.example.to_owned())
                .map_err(|err| fail(Some(label.clone()), err.to_string()))?;
            let event = Event {
                slug: e.slug,
                name: e.name,
                description: e.description,
                test_example_json: example_json.clone(),
                example_json,
                example: e.example,
                schema: e.schema,
                validator,
            };
            if let Err(errors) = event.check(&event.example) {
                return Err(fail(
                    Some(label),
                    format!("example does not match its schema: {}", errors.join("; ")),
                ));
            }
            events.push(event);
        }
        Ok(Self::new(events))
    }

    pub fn get(&self, slug: &str) -> Option<&Arc<Event>> {
        self.by_slug.get(slug).map(|&i| &self.events[i])
    }

    pub fn contains(&self, slug: &str) -> bool {
        self.by_slug.contains_key(slug)
    }

    pub fn events(&self) -> &[Arc<Event>] {
        &self.events
    }

    pub fn to_out(&self) -> api::EventList {
        api::EventList {
            events: self.events.iter().map(|e| e.to_out()).collect(),
        }
    }
}

fn valid_slug(slug: &str) -> bool {
    let bytes = slug.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(b))
}

// ---------------------------------------------------------------------------------------------
// The built-in events.

/// One payload field: its key, an example value and a schema fragment.
struct Field {
    key: &'static str,
    example: Value,
    schema: Value,
}

fn field(key: &'static str, example: Value, schema: Value) -> Field {
    Field {
        key,
        example,
        schema,
    }
}

fn int() -> Value {
    json!({"type": "integer", "minimum": 0})
}
fn num() -> Value {
    json!({"type": "number", "minimum": 0})
}
fn text() -> Value {
    json!({"type": "string"})
}
fn url() -> Value {
    json!({"type": "string", "pattern": "^https?://"})
}
fn email() -> Value {
    json!({"type": "string", "pattern": "^[^@\\s]+@[^@\\s]+$"})
}
/// Ultimate Multisite prints dates as MySQL datetimes.
fn datetime() -> Value {
    json!({"type": "string", "pattern": "^\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}$"})
}
fn currency() -> Value {
    json!({"type": "string", "pattern": "^[A-Z]{3}$"})
}
/// Flags the plugin sends as the strings "true"/"false".
fn flag() -> Value {
    json!({"type": "string", "enum": ["true", "false"]})
}
fn one_of(values: &[&str]) -> Value {
    json!({"type": "string", "enum": values})
}

const SITE_URL: &str = "https://network.example.com";

fn customer() -> Vec<Field> {
    vec![
        field("customer_id", json!(42), int()),
        field("customer_name", json!("Amara Okafor"), text()),
        field("customer_user_id", json!(7), int()),
        field(
            "customer_user_email",
            json!("amara@okafor-studio.example"),
            email(),
        ),
        field(
            "customer_email_verification",
            json!("verified"),
            one_of(&["none", "pending", "verified"]),
        ),
        field(
            "customer_avatar",
            json!("https://secure.gravatar.com/avatar/5f1c0e8d?s=96&d=mm"),
            url(),
        ),
        field(
            "customer_billing_address",
            json!("Okafor Studio, 12 Marina Road, Lagos, LA 101241, NG"),
            text(),
        ),
        field(
            "customer_manage_url",
            json!(format!(
                "{SITE_URL}/wp-admin/network/admin.php?page=wp-ultimo-edit-customer&id=42"
            )),
            url(),
        ),
    ]
}

fn membership() -> Vec<Field> {
    vec![
        field("membership_id", json!(318), int()),
        field(
            "membership_status",
            json!("active"),
            one_of(&[
                "pending",
                "active",
                "on-hold",
                "expired",
                "cancelled",
                "trialing",
            ]),
        ),
        field("membership_reference_code", json!("MDSC7QX2"), text()),
        field("membership_initial_amount", json!("$49.00"), text()),
        field("membership_initial_amount_raw", json!(49.0), num()),
        field("membership_amount", json!("$29.00"), text()),
        field("membership_amount_raw", json!(29.0), num()),
        field("membership_currency", json!("USD"), currency()),
        field(
            "membership_description",
            json!("Studio Plan - $29.00 every month"),
            text(),
        ),
        field("membership_gateway", json!("stripe"), text()),
        field(
            "membership_date_expiration",
            json!("2026-12-14 23:59:59"),
            datetime(),
        ),
        field(
            "membership_manage_url",
            json!(format!(
                "{SITE_URL}/wp-admin/network/admin.php?page=wp-ultimo-edit-membership&id=318"
            )),
            url(),
        ),
    ]
}

fn payment() -> Vec<Field> {
    vec![
        field("payment_id", json!(1207), int()),
        field(
            "payment_status",
            json!("completed"),
            one_of(&[
                "pending",
                "completed",
                "refunded",
                "partially-refunded",
                "partially-paid",
                "failed",
                "cancelled",
            ]),
        ),
        field("payment_reference_code", json!("PY8K2LRM"), text()),
        field("payment_subtotal", json!("$29.00"), text()),
        field("payment_subtotal_raw", json!(29.0), num()),
        field("payment_tax_total", json!("$2.32"), text()),
        field("payment_tax_total_raw", json!(2.32), num()),
        field("payment_total", json!("$31.32"), text()),
        field("payment_total_raw", json!(31.32), num()),
        field("payment_currency", json!("USD"), currency()),
        field("payment_product_names", json!("Studio Plan"), text()),
        field(
            "payment_date_created",
            json!("2026-11-14 09:12:44"),
            datetime(),
        ),
        field("payment_gateway", json!("stripe"), text()),
        field(
            "payment_invoice_url",
            json!(format!(
                "{SITE_URL}/?action=invoice_pdf&reference=PY8K2LRM&key=7c1f9a"
            )),
            url(),
        ),
        field(
            "payment_manage_url",
            json!(format!(
                "{SITE_URL}/wp-admin/network/admin.php?page=wp-ultimo-edit-payment&id=1207"
            )),
            url(),
        ),
    ]
}

fn site() -> Vec<Field> {
    vec![
        field("site_id", json!(23), int()),
        field("site_title", json!("Okafor Studio"), text()),
        field(
            "site_description",
            json!("Photography and design from Lagos"),
            text(),
        ),
        field(
            "site_url",
            json!("https://okafor.network.example.com"),
            url(),
        ),
        field(
            "site_admin_url",
            json!("https://okafor.network.example.com/wp-admin/"),
            url(),
        ),
        field(
            "site_manage_url",
            json!(format!(
                "{SITE_URL}/wp-admin/network/admin.php?page=wp-ultimo-edit-site&id=23"
            )),
            url(),
        ),
    ]
}

fn domain() -> Vec<Field> {
    vec![
        field("domain_id", json!(9), int()),
        field(
            "domain_domain",
            json!("okaforstudio.example"),
            json!({"type": "string", "pattern": "^[a-z0-9.-]+\\.[a-z]{2,}$"}),
        ),
        field("domain_site_id", json!(23), int()),
        field(
            "domain_stage",
            json!("checking-dns"),
            one_of(&[
                "checking-dns",
                "checking-ssl-cert",
                "done-without-ssl",
                "done",
                "failed",
                "ssl-failed",
            ]),
        ),
        field("domain_active", json!("true"), flag()),
        field("domain_primary", json!("false"), flag()),
        field("domain_secure", json!("false"), flag()),
        field(
            "domain_date_created",
            json!("2026-11-14 10:03:51"),
            datetime(),
        ),
        field(
            "domain_manage_url",
            json!(format!(
                "{SITE_URL}/wp-admin/network/admin.php?page=wp-ultimo-edit-domain&id=9"
            )),
            url(),
        ),
    ]
}

fn billing_address() -> Vec<Field> {
    vec![
        field("company_name", json!("Okafor Studio Ltd"), text()),
        field(
            "billing_email",
            json!("billing@okafor-studio.example"),
            email(),
        ),
        field("billing_address_line_1", json!("12 Marina Road"), text()),
        field("billing_address_line_2", json!("Suite 4"), text()),
        field(
            "billing_country",
            json!("NG"),
            json!({"type": "string", "pattern": "^[A-Z]{2}$"}),
        ),
        field("billing_state", json!("LA"), text()),
        field("billing_city", json!("Lagos"), text()),
        field("billing_zip_code", json!("101241"), text()),
    ]
}

struct BuiltinEvent {
    slug: &'static str,
    name: &'static str,
    description: &'static str,
    fields: Vec<Field>,
}

impl BuiltinEvent {
    /// The registered example, without the `wu_version` of real events.
    fn payload(&self) -> Value {
        let mut map = Map::new();
        for f in &self.fields {
            map.insert(f.key.to_owned(), f.example.clone());
        }
        Value::Object(map)
    }

    /// [`BuiltinEvent::payload`] as JSON text, in the order the plugin builds it (the fields'
    /// order, then `wu_version` when `real`: `Event_Manager::do_event` appends it to real events,
    /// a test send goes without).
    fn payload_json(&self, real: bool) -> Box<RawValue> {
        let json = |v: &dyn erased::Json| v.text();
        let mut parts: Vec<String> = self
            .fields
            .iter()
            .map(|f| format!("{}:{}", json(&f.key), json(&f.example)))
            .collect();
        if real {
            parts.push(format!("\"wu_version\":{}", json(&WU_VERSION)));
        }
        RawValue::from_string(format!("{{{}}}", parts.join(",")))
            .expect("built from serialised JSON")
    }

    fn schema(&self) -> Value {
        let mut properties = Map::new();
        let mut required: Vec<&str> = Vec::new();
        for f in &self.fields {
            properties.insert(f.key.to_owned(), f.schema.clone());
            required.push(f.key);
        }
        // Optional: real events carry it, test sends do not.
        properties.insert(
            "wu_version".into(),
            json!({
                "type": "string",
                "pattern": "^\\d+\\.\\d+\\.\\d+",
                "description": "The plugin's version; on real events only, not on test sends.",
            }),
        );
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": self.name,
            "type": "object",
            "properties": properties,
            "required": required,
        })
    }
}

mod erased {
    /// Anything serialisable, as its JSON text.
    pub trait Json {
        fn text(&self) -> String;
    }

    impl<T: serde::Serialize + ?Sized> Json for T {
        fn text(&self) -> String {
            serde_json::to_string(self).expect("serialises")
        }
    }
}

fn group(parts: Vec<Vec<Field>>) -> Vec<Field> {
    parts.into_iter().flatten().collect()
}

fn builtin_events() -> Vec<BuiltinEvent> {
    let ev = |slug, name, description, fields| BuiltinEvent {
        slug,
        name,
        description,
        fields,
    };
    vec![
        ev(
            "payment_received",
            "Payment Received",
            "A payment came in, whatever its status (completed, pending, failed). Carries the \
             payment, the membership it pays for and the customer.",
            group(vec![payment(), membership(), customer()]),
        ),
        ev(
            "site_published",
            "Site Published",
            "A site tied to a membership went live: created directly, or moved from pending to \
             published. Carries the site, the membership and its owner.",
            group(vec![site(), membership(), customer()]),
        ),
        ev(
            "confirm_email_address",
            "Email Verification Needed",
            "A customer signed up and must confirm their email address before going on. Carries \
             the confirmation link to send them, and the customer.",
            group(vec![
                vec![field(
                    "verification_link",
                    json!(format!(
                        "{SITE_URL}/?customer-verification=1&key=b41d6e0c95f2"
                    )),
                    url(),
                )],
                customer(),
            ]),
        ),
        ev(
            "domain_created",
            "New Domain Mapping Added",
            "A customer mapped a custom domain to one of their sites. Carries the domain (with its \
             DNS/SSL stage), the site, the membership and the customer.",
            group(vec![domain(), site(), membership(), customer()]),
        ),
        ev(
            "renewal_payment_created",
            "New Renewal Payment Created",
            "A pending payment was created to renew a membership. Carries the page where the \
             customer can pay it, the payment, the membership and the customer.",
            group(vec![
                vec![field(
                    "default_payment_url",
                    json!(format!("{SITE_URL}/register/?payment=PY8K2LRM")),
                    url(),
                )],
                payment(),
                membership(),
                customer(),
            ]),
        ),
        ev(
            "customer_created",
            "Customer Created",
            "A customer record was added to the network. Carries the customer and their billing \
             address.",
            group(vec![customer(), billing_address()]),
        ),
        ev(
            "customer_updated",
            "Customer Updated",
            "A customer record changed (profile, email, billing address). Carries the customer as \
             it is now and their billing address.",
            group(vec![customer(), billing_address()]),
        ),
        ev(
            "membership_created",
            "Membership Created",
            "A membership was added, for example at checkout. Carries the membership, its \
             customer and the billing address.",
            group(vec![membership(), customer(), billing_address()]),
        ),
        ev(
            "membership_updated",
            "Membership Updated",
            "A membership changed: status, plan, amount or expiration. Carries the membership as \
             it is now, its customer and the billing address.",
            group(vec![membership(), customer(), billing_address()]),
        ),
        ev(
            "payment_created",
            "Payment Created",
            "A payment record was added. Carries the payment, its membership, the customer and \
             the billing address.",
            group(vec![payment(), membership(), customer(), billing_address()]),
        ),
        ev(
            "payment_updated",
            "Payment Updated",
            "A payment record changed, typically its status (completed, refunded). Carries the \
             payment as it is now, its membership, the customer and the billing address.",
            group(vec![payment(), membership(), customer(), billing_address()]),
        ),
        ev(
            "payment_failed",
            "Recurring Payment Failed",
            "An automatic renewal charge was declined by the gateway. Carries the membership at \
             risk, the customer and the gateway that declined it.",
            group(vec![
                membership(),
                customer(),
                vec![field("payment_gateway", json!("stripe"), text())],
            ]),
        ),
        ev(
            "membership_expired",
            "Membership Expired",
            "A membership reached its expiration date without being renewed. Carries the \
             membership and the customer.",
            group(vec![membership(), customer()]),
        ),
        ev(
            "invoice_sent",
            "Invoice Sent",
            "A network admin sent a customer an invoice for a payment. Carries the payment (with \
             its invoice link), the customer, the page where they can pay it (`payment_url`, \
             empty when the payment has none) and the admin's message (`invoice_message`).",
            group(vec![
                payment(),
                customer(),
                vec![
                    field(
                        "payment_url",
                        json!(format!("{SITE_URL}/register/?payment=PY8K2LRM")),
                        // Empty when the payment cannot be paid any more (`?: ''`).
                        json!({"type": "string", "pattern": "^(https?://|$)"}),
                    ),
                    field(
                        "invoice_message",
                        json!("Your Studio Plan invoice for December; thank you!"),
                        text(),
                    ),
                ],
            ]),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORE: [&str; 11] = [
        "payment_received",
        "site_published",
        "confirm_email_address",
        "domain_created",
        "renewal_payment_created",
        "customer_created",
        "customer_updated",
        "membership_created",
        "membership_updated",
        "payment_created",
        "payment_updated",
    ];

    #[test]
    fn builtin_has_every_core_event_with_version() {
        let catalog = Catalog::builtin();
        for slug in CORE {
            let e = catalog
                .get(slug)
                .unwrap_or_else(|| panic!("{slug} missing"));
            assert!(!e.name.is_empty() && e.description.len() > 20, "{slug}");
            let real: Value = serde_json::from_str(e.example_json.get()).unwrap();
            assert_eq!(real["wu_version"], WU_VERSION, "{slug}");
            assert!(e.example.get("wu_version").is_none(), "{slug}");
        }
        let domain = &catalog.get("domain_created").unwrap().example;
        assert_eq!(domain["domain_secure"], "false");
        assert!(domain.get("site_url").is_some());
        let slugs: Vec<_> = catalog.events().iter().map(|e| e.slug.as_str()).collect();
        let mut unique = slugs.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(slugs.len(), unique.len());
    }

    /// The keys of each group as the plugin's `wu_generate_event_payload` (inc/functions/event.php)
    /// builds them, in its order, and the billing address as `Billing_Address::fields()` lists it.
    fn plugin_group(name: &'static str) -> Vec<&'static str> {
        match name {
            "payment" => vec![
                "payment_id",
                "payment_status",
                "payment_reference_code",
                "payment_subtotal",
                "payment_subtotal_raw",
                "payment_tax_total",
                "payment_tax_total_raw",
                "payment_total",
                "payment_total_raw",
                "payment_currency",
                "payment_product_names",
                "payment_date_created",
                "payment_gateway",
                "payment_invoice_url",
                "payment_manage_url",
            ],
            "membership" => vec![
                "membership_id",
                "membership_status",
                "membership_reference_code",
                "membership_initial_amount",
                "membership_initial_amount_raw",
                "membership_amount",
                "membership_amount_raw",
                "membership_currency",
                "membership_description",
                "membership_gateway",
                "membership_date_expiration",
                "membership_manage_url",
            ],
            "customer" => vec![
                "customer_id",
                "customer_name",
                "customer_user_id",
                "customer_user_email",
                "customer_email_verification",
                "customer_avatar",
                "customer_billing_address",
                "customer_manage_url",
            ],
            "site" => vec![
                "site_id",
                "site_title",
                "site_description",
                "site_url",
                "site_admin_url",
                "site_manage_url",
            ],
            "domain" => vec![
                "domain_id",
                "domain_domain",
                "domain_site_id",
                "domain_stage",
                "domain_active",
                "domain_primary",
                "domain_secure",
                "domain_date_created",
                "domain_manage_url",
            ],
            "billing" => vec![
                "company_name",
                "billing_email",
                "billing_address_line_1",
                "billing_address_line_2",
                "billing_country",
                "billing_state",
                "billing_city",
                "billing_zip_code",
            ],
            // A single key the caller merges in by hand.
            key => vec![key],
        }
    }

    /// Each built-in event's payload as the plugin's `wu_do_event` caller merges it, in that
    /// order, with `wu_version` last (`Event_Manager::do_event`) and no old-name aliases: the
    /// plugin registers `deprecated_args` but never merges them into what it sends.
    #[test]
    fn builtin_payloads_have_the_plugin_keys_in_its_order() {
        let expected: [(&str, &[&str]); 14] = [
            // Payment_Manager::handle_payment_success
            ("payment_received", &["payment", "membership", "customer"]),
            // Site_Manager::handle_site_published
            ("site_published", &["site", "membership", "customer"]),
            // Customer::send_verification_email
            ("confirm_email_address", &["verification_link", "customer"]),
            // Domain_Manager::handle_domain_created
            (
                "domain_created",
                &["domain", "site", "membership", "customer"],
            ),
            // Cron::async_create_renewal_payment (inc/class-cron.php)
            (
                "renewal_payment_created",
                &["default_payment_url", "payment", "membership", "customer"],
            ),
            // Event_Manager::get_model_payload: the model, its membership, its customer, the
            // billing address (a payment's through its membership).
            ("customer_created", &["customer", "billing"]),
            ("customer_updated", &["customer", "billing"]),
            ("membership_created", &["membership", "customer", "billing"]),
            ("membership_updated", &["membership", "customer", "billing"]),
            (
                "payment_created",
                &["payment", "membership", "customer", "billing"],
            ),
            (
                "payment_updated",
                &["payment", "membership", "customer", "billing"],
            ),
            // Newer releases: the Stripe and PayPal gateways, Cron, the payment admin pages.
            (
                "payment_failed",
                &["membership", "customer", "payment_gateway"],
            ),
            ("membership_expired", &["membership", "customer"]),
            (
                "invoice_sent",
                &["payment", "customer", "payment_url", "invoice_message"],
            ),
        ];
        let catalog = Catalog::builtin();
        assert_eq!(catalog.events().len(), expected.len());
        for (slug, groups) in expected {
            let e = catalog
                .get(slug)
                .unwrap_or_else(|| panic!("{slug} missing"));
            let mut want: Vec<&str> = groups.iter().flat_map(|g| plugin_group(g)).collect();
            want.push("wu_version");
            let keys = key_order(e.example_json.get());
            assert_eq!(keys, want, "{slug}");
        }
        for (slug, aliases) in [
            (
                "payment_received",
                &["user_id", "amount", "gateway", "status", "date"][..],
            ),
            (
                "domain_created",
                &[
                    "user_id",
                    "user_site_id",
                    "mapped_domain",
                    "user_site_url",
                    "network_ip",
                ][..],
            ),
        ] {
            let example = &catalog.get(slug).unwrap().example;
            for alias in aliases {
                assert!(example.get(alias).is_none(), "{slug} sends {alias}");
            }
        }
    }

    /// The top-level keys of a JSON object text, in the text's order.
    fn key_order(text: &str) -> Vec<String> {
        struct Keys(Vec<String>);
        impl<'de> Deserialize<'de> for Keys {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = Keys;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Keys, A::Error> {
                        let mut keys = Vec::new();
                        while let Some((k, _)) =
                            map.next_entry::<String, serde::de::IgnoredAny>()?
                        {
                            keys.push(k);
                        }
                        Ok(Keys(keys))
                    }
                }
                d.deserialize_map(V)
            }
        }
        serde_json::from_str::<Keys>(text).unwrap().0
    }

    /// "Send Test Event" sends the registered example as is; only `do_event` (real events) adds
    /// `wu_version` (Webhook_Manager::send_test_event vs Event_Manager::do_event).
    #[test]
    fn a_builtin_test_example_is_the_real_one_without_wu_version() {
        for e in Catalog::builtin().events() {
            let mut keys = key_order(e.example_json.get());
            assert_eq!(keys.pop().as_deref(), Some("wu_version"), "{}", e.slug);
            assert_eq!(key_order(e.test_example_json.get()), keys, "{}", e.slug);
            // The listed example is the test one; the real one adds the version.
            let test: Value = serde_json::from_str(e.test_example_json.get()).unwrap();
            assert_eq!(test, e.example, "{}", e.slug);
            let mut real: Value = serde_json::from_str(e.example_json.get()).unwrap();
            assert_eq!(real["wu_version"], WU_VERSION, "{}", e.slug);
            // Both are valid payloads of the event.
            assert_eq!(e.check(&real), Ok(()), "{}", e.slug);
            real.as_object_mut().unwrap().remove("wu_version");
            assert_eq!(real, e.example, "{}", e.slug);
        }
        // A user catalog has no version to add: its test example is its example.
        let c = Catalog::from_json(
            "mine.json",
            r#"[{"slug": "p", "name": "P", "example": {"b": 1, "a": 2}}]"#,
        )
        .unwrap();
        let p = c.get("p").unwrap();
        assert_eq!(p.test_example_json.get(), r#"{"b": 1, "a": 2}"#);
        assert_eq!(p.example_json.get(), p.test_example_json.get());
    }

    /// Every built-in example is checked by an independently compiled validator against its
    /// schema, and the schema really constrains the payload.
    #[test]
    fn every_builtin_example_matches_its_schema() {
        let catalog = Catalog::builtin();
        for e in catalog.events() {
            let schema = e.schema.as_ref().unwrap();
            assert!(
                jsonschema::meta::is_valid(schema),
                "{}: schema invalid",
                e.slug
            );
            let validator = jsonschema::validator_for(schema).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&e.example)
                .map(|x| x.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", e.slug);

            // Drop a required key and mistype another (the version too): all must be caught.
            let mut broken = e.example.clone();
            let obj = broken.as_object_mut().unwrap();
            let mut keys = obj.keys().filter(|k| *k != "wu_version").cloned();
            let (dropped, mistyped) = (keys.next().unwrap(), keys.next().unwrap());
            obj.remove(&dropped);
            obj.insert(mistyped, json!([1, 2]));
            obj.insert("wu_version".into(), json!("new"));
            let errors = e.check(&broken).unwrap_err();
            assert!(errors.len() >= 3, "{}: {errors:?}", e.slug);
        }
    }

    #[test]
    fn user_catalog_loads_and_replaces_builtin() {
        let text = r#"{"events": [
            {"slug": "order.paid", "name": "Order Paid", "description": "d",
             "example": {"order_id": 5},
             "schema": {"type": "object", "required": ["order_id"],
                        "properties": {"order_id": {"type": "integer"}}}},
            {"slug": "ping", "name": "Ping", "example": {}}
        ]}"#;
        let c = Catalog::from_json("mine.json", text).unwrap();
        assert_eq!(c.events().len(), 2);
        assert!(c.contains("order.paid") && !c.contains("payment_received"));
        assert!(
            c.get("order.paid")
                .unwrap()
                .check(&json!({"order_id": "x"}))
                .is_err()
        );
        assert!(
            c.get("ping")
                .unwrap()
                .check(&json!({"anything": 1}))
                .is_ok()
        );
        // The bare array form.
        let bare = r#"[{"slug": "ping", "name": "Ping", "example": {"a": 1}}]"#;
        assert_eq!(
            Catalog::from_json("b.json", bare).unwrap().events().len(),
            1
        );
    }

    fn err(text: &str) -> CatalogError {
        Catalog::from_json("mine.json", text).unwrap_err()
    }

    #[test]
    fn bad_user_catalogs_name_file_event_and_problem() {
        let e = err("{not json");
        assert_eq!(
            (e.source_name.as_str(), e.event.as_deref()),
            ("mine.json", None)
        );
        assert!(e.to_string().starts_with("mine.json: not a catalog"), "{e}");

        let e = err(r#"{"events": []}"#);
        assert_eq!(e.to_string(), "mine.json: has no events");

        let e = err(r#"[{"slug": "ping", "example": {}}]"#);
        assert_eq!(e.event.as_deref(), Some("ping"));
        assert!(e.problem.contains("missing field `name`"), "{e}");

        let e = err(r#"[{"name": "No slug", "example": {}}]"#);
        assert_eq!(e.event.as_deref(), Some("#1"));

        let e = err(r#"[{"slug": "Bad Slug", "name": "x", "example": {}}]"#);
        assert!(e.problem.contains("slug must match"), "{e}");

        let e = err(r#"[{"slug": "a", "name": "A", "example": {}},
                        {"slug": "a", "name": "A2", "example": {}}]"#);
        assert_eq!(
            (e.event.as_deref(), e.problem.as_str()),
            (Some("a"), "slug appears twice")
        );

        let e = err(r#"[{"slug": "a", "name": "A", "example": [1]}]"#);
        assert_eq!(e.problem, "example must be a JSON object");

        let e = err(r#"[{"slug": "a", "name": "A", "example": {}, "schema": {"type": 12}}]"#);
        assert!(
            e.problem.starts_with("schema is not a valid JSON Schema"),
            "{e}"
        );

        let e = err(r#"[{"slug": "a", "name": "A", "example": {"n": "x"},
                        "schema": {"properties": {"n": {"type": "integer"}}}}]"#);
        assert!(
            e.problem
                .starts_with("example does not match its schema: at `/n`"),
            "{e}"
        );
        assert!(
            e.to_string().starts_with("mine.json: event `a`: example"),
            "{e}"
        );

        let e = err(r#"[{"slug": "a", "name": "A", "example": {}, "colour": "red"}]"#);
        assert!(e.problem.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn missing_file_is_named() {
        let e = Catalog::from_file(Path::new("/nonexistent/catalog.json")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/catalog.json: cannot read"),
            "{e}"
        );
    }
}
