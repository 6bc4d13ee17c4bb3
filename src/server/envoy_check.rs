//! Envoy's `envoy.service.auth.v3.Authorization/Check` on the real server: one
//! call through the dispatcher, read straight down: snapshot → plan → convert →
//! decide → token → log → respond. The pure parts (the route table, `plan`,
//! `respond`) are in `envoy/`; this file adds what needs the sidecar's state:
//! the decision, the system user's token, and the record.
//!
//! Fail closed throughout: no binding, no route, a client Vakt cannot map, a
//! system user it cannot choose, a token it cannot get or that is for another
//! system user: each is a deny, recorded, and never an ALLOW. Shadow mode lets
//! a would-be deny through (with its token when one could be had), recorded as
//! a shadow deny. No ALLOW is answered before its record is written.

use super::authorize::{decide_only, record, Extra};
use super::binding::Binding;
use super::call::{new_decision_id, CallMeta, Vakt};
use super::dispatch::{Call, Caller, Gate};
use super::envoy::{
    self, reason, CheckInput, ClientKind, DecisionInput, Denied, Outcome, RequestSummary,
    TokenKind, Verdict,
};
use super::error::CallError;
use super::metrics::Method;
use crate::decision::{resolve, Decision, Query, RawRequest, Reason, DATA_STALE};
use crate::decision_log::{now_rfc3339, DecisionRecord, EnvoyNote, TokenNote};
use crate::maskinporten::{OrgNumber, Scope, Token, TokenError};
use crate::rules::snapshot::Snapshot;
use crate::world::{OrgNo, SystemUser};
use envoy_types::pb::envoy::service::auth::v3::CheckResponse;
use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::{Request, Response, Status};

/// Envoy's `envoy.service.auth.v3.Authorization` service, as envoy-types'
/// generated `AuthorizationServer` serves it (the same path, codec, limits and
/// answer to an unknown method), except that the request is decoded as
/// [`CheckInput`]: only the fields Check reads, the headers without a map.
#[derive(Clone)]
pub(super) struct CheckServer {
    vakt: Arc<Vakt>,
    max_decoding_message_size: Option<usize>,
}

/// The Check service, ready to add to the server.
pub(super) fn service(vakt: Arc<Vakt>) -> CheckServer {
    CheckServer {
        vakt,
        max_decoding_message_size: None,
    }
}

impl CheckServer {
    /// Limits the size of a decoded request (default: tonic's 4 MB).
    #[must_use]
    pub(super) fn max_decoding_message_size(mut self, limit: usize) -> Self {
        self.max_decoding_message_size = Some(limit);
        self
    }
}

impl tonic::server::NamedService for CheckServer {
    const NAME: &'static str = "envoy.service.auth.v3.Authorization";
}

/// The one method: `Check`.
struct CheckMethod(Arc<Vakt>);

impl tonic::server::UnaryService<CheckInput> for CheckMethod {
    type Response = CheckResponse;
    type Future = BoxFuture<Response<CheckResponse>, Status>;

    fn call(&mut self, req: Request<CheckInput>) -> Self::Future {
        let vakt = self.0.clone();
        Box::pin(async move { super::dispatch::run(&vakt, req).await })
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for CheckServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != "/envoy.service.auth.v3.Authorization/Check" {
            return Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(
                    Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            });
        }
        let method = CheckMethod(self.vakt.clone());
        let max = self.max_decoding_message_size;
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<CheckResponse, CheckInput>::default();
            let mut grpc = tonic::server::Grpc::new(codec).apply_max_message_size_config(max, None);
            Ok(grpc.unary(method, req).await)
        })
    }
}

impl Call for CheckInput {
    type Answer = CheckResponse;
    const METHOD: Method = Method::EnvoyCheck;
    const GATE: Gate = Gate::Decision;

    async fn handle(self, vakt: &Vakt, caller: &Caller) -> Result<Self::Answer, CallError> {
        let (snap, stale) = vakt.snapshot_for(0).await;
        let binding = vakt.binding();
        let Some((binding, routes)) = binding
            .as_deref()
            .and_then(|b| b.envoy.as_ref().map(|e| (b, e)))
        else {
            let c = Checking::new(vakt, &snap, &caller.meta, false);
            return c.denied_early(&envoy::unconfigured(&self)).await;
        };
        let c = Checking::new(vakt, &snap, &caller.meta, routes.config.shadow);
        match envoy::plan(&self, &routes.config, routes.verifier.as_deref()) {
            Err(denied) => c.denied_early(&denied).await,
            Ok(input) => {
                let su_header = &routes.config.system_user_header;
                c.decided(binding, input, stale.as_deref(), su_header).await
            }
        }
    }
}

/// The party id's organisation, when the world maps it (an organisation's
/// `partyId`). The one place Check turns an Altinn party id into an org number;
/// a party id the data does not hold (or too large for one) maps to none.
fn org_of_party(snap: &Snapshot, party: &str) -> Option<OrgNo> {
    let id: i64 = party.parse().ok()?;
    snap.world
        .organization_by_party_id(id)
        .map(|o| o.org_number)
}

/// One Check as it passes through: what it decides on and how it is answered.
struct Checking<'a> {
    vakt: &'a Vakt,
    snap: &'a Snapshot,
    meta: &'a CallMeta,
    /// `[envoy] shadow`: a would-be deny is let through.
    shadow: bool,
}

/// What a request asked for, as far as it was read, for a record made without
/// a decision.
#[derive(Default)]
struct Asked<'a> {
    employee: &'a str,
    system_user: Option<&'a str>,
    client: &'a str,
    package: &'a str,
    action: &'a str,
}

/// The token handed out: the system user's Maskinporten token, and what it was
/// exchanged for on an `altinn` route.
struct Handed {
    maskinporten: Arc<Token>,
    altinn: Option<Arc<Token>>,
}

impl Handed {
    /// The token put in `authorization`.
    fn bearer(&self) -> &Token {
        self.altinn.as_deref().unwrap_or(&self.maskinporten)
    }

    /// What the record says about it: never the token itself.
    fn note(&self) -> TokenNote<'_> {
        TokenNote {
            kind: if self.altinn.is_some() {
                "altinn"
            } else {
                "maskinporten"
            },
            jti: self.maskinporten.jti.as_deref(),
            expires_at: self.bearer().expires_at,
            scope: &self.maskinporten.scope,
        }
    }
}

/// Why no token: the verdict (a deny, or Unavailable when Maskinporten could
/// not give it) and the reason.
type NoToken = (Verdict, Reason);

impl<'a> Checking<'a> {
    fn new(vakt: &'a Vakt, snap: &'a Snapshot, meta: &'a CallMeta, shadow: bool) -> Self {
        Self {
            vakt,
            snap,
            meta,
            shadow,
        }
    }

    /// A request denied before planning or while planning: recorded, and
    /// answered 403 (or let through unchanged in shadow mode).
    async fn denied_early(&self, denied: &Denied) -> Result<CheckResponse, CallError> {
        let decision_id = new_decision_id();
        let reasons = [reason_in(&denied.reason)];
        let note = envoy_note(denied.route.as_deref(), &denied.request, None, self.shadow);
        self.record_undecided(&decision_id, &Asked::default(), &reasons, note)
            .wait()
            .await?;
        let outcome = Outcome::denied(denied, decision_id, self.shadow);
        Ok(envoy::respond_owned(outcome, None))
    }

    /// A planned request: the client converted, the system user chosen, the
    /// decision, the token on ALLOW, the record, the answer.
    async fn decided(
        &self,
        binding: &Binding,
        input: DecisionInput,
        stale: Option<&str>,
        su_header: &str,
    ) -> Result<CheckResponse, CallError> {
        let client = match input.client.kind {
            ClientKind::OrgNumber => input.client.value.clone(),
            ClientKind::PartyId => match org_of_party(self.snap, &input.client.value) {
                Some(org) => org.digits().to_string(),
                None => {
                    let why = Reason {
                        policy_id: reason::PARTY_UNKNOWN.into(),
                        message: format!(
                            "party id {} ({}) is not one the data maps to an organisation, so its client cannot be decided",
                            input.client.value, input.client.from
                        ),
                    };
                    return self
                        .refused(&input, "", None, Verdict::Deny, vec![why])
                        .await;
                }
            },
        };
        let raw = |system_user: &str| RawRequest {
            employee_id: input.employee.clone(),
            system_user_id: system_user.to_owned(),
            client_org_number: client.clone(),
            access_package: input.package.clone(),
            action: input.action.clone().unwrap_or_default(),
            context: None,
        };
        let system_user = match &input.system_user {
            Some(named) => named.clone(),
            None => match choose_system_user(self.snap, stale, raw(""), su_header) {
                Ok(id) => id,
                Err((verdict, reasons)) => {
                    return self.refused(&input, &client, None, verdict, reasons).await
                }
            },
        };
        let q = match Query::check(self.snap, raw(&system_user), "") {
            Ok(q) => q,
            Err(e) => {
                let why = Reason {
                    policy_id: reason::INVALID.into(),
                    message: e.to_string(),
                };
                let su = Some(system_user.as_str());
                return self
                    .refused(&input, &client, su, Verdict::Deny, vec![why])
                    .await;
            }
        };
        let mut decided = decide_only(self.vakt, self.snap, &q, stale, false);
        let allowed = decided.decision.allowed;
        let mut verdict = if allowed {
            Verdict::Allow
        } else if decided
            .decision
            .reasons
            .iter()
            .any(|r| r.policy_id == DATA_STALE)
        {
            Verdict::Unavailable
        } else {
            Verdict::Deny
        };
        // A token on ALLOW; in shadow mode also for a would-be deny, so the
        // request goes on as it will once enforced.
        let handed = if allowed || self.shadow {
            let got = match self.snap.world.system_user(&system_user) {
                Some(su) => token_for(binding, &input, su).await,
                None => Err(no_token(
                    reason::TOKEN_UNAVAILABLE,
                    format!("system user {system_user} is not in the data"),
                )),
            };
            match got {
                Ok(h) => Some(h),
                Err((v, why)) => {
                    // An ALLOW without its token is a deny (fail closed); a
                    // shadow deny goes on with the application's own header.
                    if allowed {
                        verdict = v;
                        decided.decision = Decision {
                            allowed: false,
                            reasons: vec![why],
                            path: None,
                        };
                    }
                    None
                }
            }
        } else {
            None
        };
        let note = envoy_note(
            Some(&input.route),
            &input.request,
            Some(&input.client),
            self.shadow && verdict != Verdict::Allow,
        );
        let extra = Extra {
            call: "envoy_check",
            token: handed.as_ref().map(Handed::note),
            envoy: Some(note),
        };
        // No answer, and above all no ALLOW, without a record.
        record(self.vakt, self.snap, &q, &decided, self.meta, &extra)
            .wait()
            .await?;
        // The answer takes the decision's id and reasons and the request's
        // route and Vakt's headers as they are: nothing is copied for it.
        let outcome = Outcome {
            verdict,
            reasons: decided
                .decision
                .reasons
                .into_iter()
                .map(reason_out)
                .collect(),
            decision_id: decided.decision_id,
            shadow: self.shadow,
            route: Some(input.route),
            vakt_headers: input.vakt_headers,
        };
        let bearer = handed.as_ref().map(|h| h.bearer().access_token.expose());
        Ok(envoy::respond_owned(outcome, bearer))
    }

    /// A planned request denied before the policies were asked: recorded and
    /// answered.
    async fn refused(
        &self,
        input: &DecisionInput,
        client: &str,
        system_user: Option<&str>,
        verdict: Verdict,
        reasons: Vec<Reason>,
    ) -> Result<CheckResponse, CallError> {
        let decision_id = new_decision_id();
        let asked = Asked {
            employee: &input.employee,
            system_user,
            client,
            package: &input.package,
            action: input.action.as_deref().unwrap_or_default(),
        };
        let note = envoy_note(
            Some(&input.route),
            &input.request,
            Some(&input.client),
            self.shadow,
        );
        self.record_undecided(&decision_id, &asked, &reasons, note)
            .wait()
            .await?;
        let reasons = reasons.into_iter().map(reason_out).collect();
        let outcome = Outcome::decided(input, verdict, reasons, decision_id, self.shadow);
        Ok(envoy::respond_owned(outcome, None))
    }

    /// Submits the record of a Check denied without a decision.
    fn record_undecided(
        &self,
        decision_id: &str,
        asked: &Asked<'_>,
        reasons: &[Reason],
        envoy: EnvoyNote<'_>,
    ) -> crate::decision_log::Receipt {
        let log = self.vakt.log();
        if !log.is_enabled() {
            return crate::decision_log::Receipt::none();
        }
        let su = asked
            .system_user
            .and_then(|id| self.snap.world.system_user(id));
        let owner = su.map(|s| s.owner.digits());
        let receipt = log.submit(&DecisionRecord {
            decision_id,
            timestamp: now_rfc3339(),
            call: "envoy_check",
            employee_id: asked.employee,
            system_user_id: asked.system_user,
            system_user_external_ref: su.map(|s| &*s.external_ref),
            system_user_owner: owner.as_deref(),
            usable_system_users: None,
            client_org_number: asked.client,
            access_package: asked.package,
            action: asked.action,
            decision: "deny",
            reasons,
            revision: &self.snap.revision,
            data_sequence: self.snap.data.sequence,
            evaluation_us: 0,
            context: None,
            caller: &self.meta.caller,
            trace: &self.meta.trace,
            shadow: None,
            path: None,
            token: None,
            envoy: Some(envoy),
        });
        tracing::debug!(
            decision_id,
            reason = %reasons.first().map_or("", |r| r.policy_id.as_str()),
            "envoy check denied before deciding"
        );
        receipt
    }
}

/// The one system user the employee may use for this client and package, as
/// `ResolveSystemUser` finds them; none or several is a deny (several: the
/// application names one in the system-user header).
fn choose_system_user(
    snap: &Snapshot,
    stale: Option<&str>,
    raw: RawRequest,
    su_header: &str,
) -> Result<String, (Verdict, Vec<Reason>)> {
    if let Some(why) = stale {
        return Err((Verdict::Unavailable, Decision::data_stale(why).reasons));
    }
    let rq = Query::check_resolve(snap, raw).map_err(|e| {
        let why = Reason {
            policy_id: reason::INVALID.into(),
            message: e.to_string(),
        };
        (Verdict::Deny, vec![why])
    })?;
    let found = resolve(snap, &rq);
    match found.usable.as_slice() {
        [one] => Ok(one.id.to_string()),
        [] => {
            let mut reasons = vec![Reason {
                policy_id: reason::SYSTEM_USER.into(),
                message: "no system user names itself here, and none may be used for this employee, client and package".into(),
            }];
            reasons.extend(found.reasons);
            Err((Verdict::Deny, reasons))
        }
        several => {
            let ids: Vec<&str> = several.iter().map(|s| &*s.id).collect();
            let why = Reason {
                policy_id: reason::SYSTEM_USER.into(),
                message: format!(
                    "{} system users may be used for this employee, client and package ({}): name one in {su_header}",
                    ids.len(),
                    ids.join(", ")
                ),
            };
            Err((Verdict::Deny, vec![why]))
        }
    }
}

/// The scopes a route's token is asked for: the route's, else those
/// `[maskinporten.scopes]` allows its package (borrowed from the binding, not
/// copied per call); each must be allowed there.
fn scopes_for<'b>(
    binding: &'b Binding,
    input: &DecisionInput,
) -> Result<Cow<'b, [Scope]>, NoToken> {
    let deny = |message: String| {
        (
            Verdict::Deny,
            Reason {
                policy_id: reason::SCOPES.into(),
                message,
            },
        )
    };
    let scopes = if input.scopes.is_empty() {
        Cow::Borrowed(
            binding
                .scopes
                .get(&input.package)
                .map_or(&[][..], Vec::as_slice),
        )
    } else {
        let parsed: Result<Vec<Scope>, String> =
            input.scopes.iter().map(|s| Scope::parse(s)).collect();
        let parsed = parsed.map_err(|e| deny(format!("route {:?}: {e}", input.route)))?;
        if let Some(bad) = binding.scope_not_allowed(&input.package, &parsed) {
            return Err(deny(format!("route {:?}: {bad}", input.route)));
        }
        Cow::Owned(parsed)
    };
    if scopes.is_empty() {
        return Err(deny(format!(
            "no scope for the token: route {:?} names none and [maskinporten.scopes] allows none for {}",
            input.route, input.package
        )));
    }
    Ok(scopes)
}

/// The system user's token for the route: from Maskinporten (through the
/// cache), checked to be for `su`, exchanged at Altinn when the route says so.
async fn token_for(
    binding: &Binding,
    input: &DecisionInput,
    su: &SystemUser,
) -> Result<Handed, NoToken> {
    let scopes = scopes_for(binding, input)?;
    let exchange = match input.token {
        TokenKind::Maskinporten => None,
        TokenKind::Altinn => match &binding.altinn_exchange {
            Some(url) => Some(url),
            None => {
                return Err((
                    Verdict::Deny,
                    Reason {
                        policy_id: reason::NO_EXCHANGE.into(),
                        message: format!(
                        "route {:?} injects an Altinn token, and no token exchange is configured",
                        input.route
                    ),
                    },
                ))
            }
        },
    };
    let owner = OrgNumber::parse(&su.owner.digits()).map_err(|e| {
        no_token(
            reason::TOKEN_UNAVAILABLE,
            format!("the owner of system user {} {e}", su.id),
        )
    })?;
    let external_ref = Some(&*su.external_ref).filter(|r| !r.is_empty());
    let maskinporten = binding
        .maskinporten
        .shared_system_user_token(&owner, &scopes, external_ref)
        .await
        .map_err(token_failed)?;
    if !maskinporten.system_user_ids.iter().any(|id| *id == *su.id) {
        // Fail closed: the token would act as another system user than the
        // one the decision allowed.
        return Err((
            Verdict::Deny,
            Reason {
                policy_id: reason::TOKEN_MISMATCH.into(),
                message: format!(
                    "Maskinporten's token for {owner} (externalRef {}) is not for system user {}, which was decided on",
                    external_ref.unwrap_or(owner.as_str()),
                    su.id
                ),
            },
        ));
    }
    let altinn = match exchange {
        None => None,
        Some(exchange) => Some(
            binding
                .maskinporten
                .shared_altinn_token(&maskinporten, exchange)
                .await
                .map_err(token_failed)?,
        ),
    };
    let handed = Handed {
        maskinporten,
        altinn,
    };
    if !envoy::is_token(handed.bearer().access_token.expose()) {
        return Err(no_token(
            reason::TOKEN_UNAVAILABLE,
            "the token is not one an authorization header can carry".into(),
        ));
    }
    Ok(handed)
}

fn no_token(id: &str, message: String) -> NoToken {
    (
        Verdict::Unavailable,
        Reason {
            policy_id: id.into(),
            message,
        },
    )
}

/// A token failure as Check answers it: 503, refused with Maskinporten's code,
/// else unavailable. Its message never holds a token.
fn token_failed(e: TokenError) -> NoToken {
    let id = match e {
        TokenError::Refused { .. } => reason::TOKEN_REFUSED,
        _ => reason::TOKEN_UNAVAILABLE,
    };
    no_token(id, e.to_string())
}

fn envoy_note<'a>(
    route: Option<&'a str>,
    request: &'a RequestSummary,
    client: Option<&'a envoy::Client>,
    shadow_deny: bool,
) -> EnvoyNote<'a> {
    EnvoyNote {
        route,
        method: &request.method,
        host: &request.host,
        path: &request.path,
        client_from: client.map(|c| c.from.as_str()),
        client: client.map(|c| c.value.as_str()),
        shadow_deny,
    }
}

fn reason_in(r: &envoy::Reason) -> Reason {
    Reason {
        policy_id: r.policy_id.clone(),
        message: r.message.clone(),
    }
}

fn reason_out(r: Reason) -> envoy::Reason {
    envoy::Reason {
        policy_id: r.policy_id,
        message: r.message,
    }
}
