//! Proving properties of a policy set over every world Vakt can build: Cedar's
//! symbolic compiler (`cedar-policy-symcc`) asks the cvc5 SMT solver, and each
//! counterexample is written as Vakt data and replayed through Vakt's own engine.
//!
//! A property "never-allows when C" is proved by asking whether a guard policy
//! `permit when { A && C }` (A: every assumption) and the policy set can both allow
//! one request; "can-allow" asks the same and wants the answer yes. A change
//! (`--against`) is classified by asking, for each rule of the old set that denied
//! a request, whether the new set allows one it denied, and the other way round.

mod properties;
mod witness;

pub use properties::{Assumption, Kind, Properties, Property, MAX_PROPERTIES_BYTES};
pub use witness::Witness;

use crate::rules::snapshot::{Rules, Sources};
use cedar_policy::{Effect, Policy, PolicyId, PolicySet, RequestEnv, Schema};
use cedar_policy_symcc::solver::LocalSolver;
use cedar_policy_symcc::{CedarSymCompiler, CompiledPolicySet, CompiledSchema, Env};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The solver's time limit for one query.
pub const QUERY_TIME_LIMIT: Duration = Duration::from_secs(60);

/// What can stop a proof before it has an answer.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "the SMT solver cvc5 was not found (looked for {looked}); install it (Debian: apt-get install cvc5) or set CVC5 to its path"
    )]
    SolverMissing { looked: String },
    #[error("the solver could not be started: {0}")]
    SolverStart(String),
    #[error("the policy set cannot be analysed: {0}")]
    Unsupported(String),
}

/// The cvc5 program to run: `$CVC5`, else `cvc5` on the `PATH`.
#[derive(Debug, Clone)]
pub struct Solver {
    program: PathBuf,
}

impl Solver {
    pub fn find() -> Result<Self, VerifyError> {
        if let Some(p) = std::env::var_os("CVC5") {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Ok(Self { program: p })
            } else {
                Err(VerifyError::SolverMissing {
                    looked: format!("CVC5={}", p.display()),
                })
            };
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join("cvc5"))
            .find(|p| p.is_file())
            .map(|program| Self { program })
            .ok_or_else(|| VerifyError::SolverMissing {
                looked: "cvc5 on PATH".into(),
            })
    }

    /// The solver's `--version` line.
    pub fn version(&self) -> String {
        std::process::Command::new(&self.program)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "unknown version".into())
    }

    fn start(&self) -> Result<CedarSymCompiler<LocalSolver>, VerifyError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args([
            "--lang",
            "smt",
            &format!("--tlimit-per={}", QUERY_TIME_LIMIT.as_millis()),
        ]);
        let solver = LocalSolver::from_command(&mut cmd)
            .map_err(|e| VerifyError::SolverStart(e.to_string()))?;
        CedarSymCompiler::new(solver).map_err(|e| VerifyError::SolverStart(e.to_string()))
    }
}

/// The answer for one property.
#[derive(Debug)]
pub enum Outcome {
    /// Proved over every world and request (for can-allow: an allowed one found,
    /// given as the example).
    Holds(Option<Box<Witness>>),
    /// Disproved: the counterexample (for can-allow: no request is allowed).
    Fails(Option<Box<Witness>>),
    /// No answer: the solver gave up, or the analysis cannot express the policies.
    Unknown(String),
}

#[derive(Debug)]
pub struct Verdict {
    pub property: Property,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// The request environments Vakt decides: an employee acting on a system user.
fn vakt_envs(schema: &Schema) -> Vec<RequestEnv> {
    let t = crate::rules::model::types();
    schema
        .request_envs()
        .filter(|e| *e.principal() == t.employee && *e.resource() == t.system_user)
        .collect()
}

fn symcc_error(e: cedar_policy_symcc::err::Error) -> String {
    match e {
        cedar_policy_symcc::err::Error::SolverUnknown => format!(
            "the solver gave no answer within {} s",
            QUERY_TIME_LIMIT.as_secs()
        ),
        other => other.to_string(),
    }
}

/// The symbolic model of one request environment.
struct EnvModel {
    env: RequestEnv,
    sym: cedar_policy_symcc::SymEnv,
}

struct Analysis<'a> {
    schema: &'a Schema,
    compiler: CedarSymCompiler<LocalSolver>,
    envs: Vec<EnvModel>,
}

impl<'a> Analysis<'a> {
    fn new(schema: &'a Schema, solver: &Solver) -> Result<Self, VerifyError> {
        let compiled =
            CompiledSchema::new(schema).map_err(|e| VerifyError::Unsupported(e.to_string()))?;
        let envs = vakt_envs(schema)
            .into_iter()
            .map(|env| {
                let sym = compiled
                    .sym_env(&env)
                    .map_err(|e| VerifyError::Unsupported(e.to_string()))?;
                Ok(EnvModel { env, sym })
            })
            .collect::<Result<Vec<_>, VerifyError>>()?;
        Ok(Self {
            schema,
            compiler: solver.start()?,
            envs,
        })
    }

    fn compile(&self, set: &PolicySet, m: &EnvModel) -> Result<CompiledPolicySet, String> {
        CompiledPolicySet::compile_with_custom_symenv(set, &m.env, self.schema, m.sym.clone())
            .map_err(symcc_error)
    }

    /// A request in some environment that both sets allow, if any.
    async fn both_allow(&mut self, a: &PolicySet, b: &PolicySet) -> Result<Option<Env>, String> {
        for i in 0..self.envs.len() {
            let (ca, cb) = (
                self.compile(a, &self.envs[i])?,
                self.compile(b, &self.envs[i])?,
            );
            if let Some(env) = self
                .compiler
                .check_disjoint_with_counterexample_opt(&ca, &cb)
                .await
                .map_err(symcc_error)?
            {
                return Ok(Some(env));
            }
        }
        Ok(None)
    }

    /// A request on which one policy raises an error, with the policy's id.
    async fn some_error(&mut self, set: &PolicySet) -> Result<Option<(PolicyId, Env)>, String> {
        for i in 0..self.envs.len() {
            for p in set.policies() {
                let compiled = cedar_policy_symcc::CompiledPolicy::compile_with_custom_symenv(
                    p,
                    &self.envs[i].env,
                    self.schema,
                    self.envs[i].sym.clone(),
                )
                .map_err(symcc_error)?;
                if let Some(env) = self
                    .compiler
                    .check_never_errors_with_counterexample_opt(&compiled)
                    .await
                    .map_err(symcc_error)?
                {
                    return Ok(Some((p.id().clone(), env)));
                }
            }
        }
        Ok(None)
    }
}

/// What the analysis works on: the rules' sources (for replaying witnesses) and
/// their parsed schema and policies.
pub struct Subject<'a> {
    pub sources: &'a Sources,
    pub rules: &'a Rules,
}

impl Subject<'_> {
    fn policies(&self) -> &PolicySet {
        &self.rules.policies.set
    }
    fn schema(&self) -> &Schema {
        &self.rules.schema
    }
    fn witness(&self, env: &Env) -> Box<Witness> {
        Box::new(witness::witness(env, self.sources, self.rules))
    }
}

/// Proves each property in turn; one solver process serves them all.
pub async fn verify(
    subject: &Subject<'_>,
    props: &Properties,
    solver: &Solver,
) -> Result<Vec<Verdict>, VerifyError> {
    let mut a = Analysis::new(subject.schema(), solver)?;
    if a.envs.is_empty() {
        return Err(VerifyError::Unsupported(
            "the schema has no action whose principal is an Employee and resource a SystemUser"
                .into(),
        ));
    }
    let mut verdicts = Vec::new();
    for p in &props.properties {
        let start = Instant::now();
        let outcome = match prove(&mut a, subject, props, p).await {
            Ok(o) => o,
            Err(why) => Outcome::Unknown(why),
        };
        verdicts.push(Verdict {
            property: p.clone(),
            outcome,
            elapsed: start.elapsed(),
        });
    }
    Ok(verdicts)
}

async fn prove(
    a: &mut Analysis<'_>,
    subject: &Subject<'_>,
    props: &Properties,
    p: &Property,
) -> Result<Outcome, String> {
    match p.kind {
        Kind::NeverErrors => Ok(match a.some_error(subject.policies()).await? {
            None => Outcome::Holds(None),
            Some((id, env)) => {
                let mut w = subject.witness(&env);
                witness::expect_error(&mut w, id.as_ref());
                Outcome::Fails(Some(w))
            }
        }),
        Kind::NeverAllows | Kind::CanAllow => {
            let guard = properties::guard("permit", &props.condition(p.when.as_deref()))?;
            let guard = PolicySet::from_policies([guard]).map_err(|e| e.to_string())?;
            let found = a.both_allow(&guard, subject.policies()).await?;
            Ok(match (p.kind, found) {
                (Kind::NeverAllows, None) => Outcome::Holds(None),
                (Kind::NeverAllows, Some(env)) => Outcome::Fails(Some(subject.witness(&env))),
                (_, Some(env)) => Outcome::Holds(Some(subject.witness(&env))),
                (_, None) => Outcome::Fails(None),
            })
        }
    }
}

/// How a policy change moves access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Equivalent,
    Stricter,
    MorePermissive,
    Both,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Equivalent => "equivalent",
            Self::Stricter => "stricter",
            Self::MorePermissive => "more permissive",
            Self::Both => "both stricter and more permissive",
        }
    }
}

/// Requests of one shape whose decision flips: named by the rule of the set that
/// denies them (a forbid policy's id, or "no permit applied").
#[derive(Debug)]
pub struct Flip {
    pub denied_by: String,
    /// The world and request, decided by the new policies.
    pub witness: Box<Witness>,
    /// Vakt's decision on the same world and request under the old policies.
    pub old_allows: Option<bool>,
}

#[derive(Debug)]
pub struct Comparison {
    pub change: Change,
    /// Requests the new set allows and the old denied, one per shape.
    pub gained: Vec<Flip>,
    /// Requests the old set allowed and the new denies, one per shape.
    pub lost: Vec<Flip>,
}

/// The label of requests no permit policy allowed.
pub const NO_PERMIT: &str = "no permit policy applied";

/// Classifies the change from `old` to `new` over every world the assumptions
/// allow.
pub async fn compare(
    new: &Subject<'_>,
    old: &Subject<'_>,
    props: &Properties,
    solver: &Solver,
) -> Result<Comparison, VerifyError> {
    let mut a = Analysis::new(new.schema(), solver)?;
    let unknown = VerifyError::Unsupported;
    let gained = flips(&mut a, new, old, props, new, old)
        .await
        .map_err(unknown)?;
    let lost = flips(&mut a, old, new, props, new, old)
        .await
        .map_err(unknown)?;
    let change = match (gained.is_empty(), lost.is_empty()) {
        (true, true) => Change::Equivalent,
        (true, false) => Change::Stricter,
        (false, true) => Change::MorePermissive,
        (false, false) => Change::Both,
    };
    Ok(Comparison {
        change,
        gained,
        lost,
    })
}

/// Requests `to` allows that `from` denied, one for each rule of `from` that
/// denies: each forbid policy (read as a permit, to ask "where does it match"),
/// and "no permit applied".
async fn flips(
    a: &mut Analysis<'_>,
    to: &Subject<'_>,
    from: &Subject<'_>,
    props: &Properties,
    new: &Subject<'_>,
    old: &Subject<'_>,
) -> Result<Vec<Flip>, String> {
    let assumed = props.condition(None);
    let mut allowed_by_to = to.policies().clone();
    allowed_by_to
        .add(properties::guard("forbid", &format!("!({assumed})"))?)
        .map_err(|e| e.to_string())?;
    let mut shapes: Vec<(String, PolicySet)> = Vec::new();
    for p in from.policies().policies() {
        if p.effect() == Effect::Forbid {
            shapes.push((
                p.id().to_string(),
                PolicySet::from_policies([as_permit(p)?]).map_err(|e| e.to_string())?,
            ));
        }
    }
    // No permit of `from` applies: a permit when { !(p1 || p2 ...) } is not
    // expressible over scopes, so ask "allowed by `to` and not by `from`'s
    // permits alone" with a forbid per permit.
    let mut no_permit = PolicySet::new();
    no_permit
        .add(properties::guard("permit", "true")?)
        .map_err(|e| e.to_string())?;
    for (i, p) in from
        .policies()
        .policies()
        .filter(|p| p.effect() == Effect::Permit)
        .enumerate()
    {
        let mut j = serde_json::to_value(p.to_json().map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        j["effect"] = "forbid".into();
        let forbid =
            Policy::from_json(Some(PolicyId::new(format!("vakt-verify-no-permit-{i}"))), j)
                .map_err(|e| e.to_string())?;
        no_permit.add(forbid).map_err(|e| e.to_string())?;
    }
    shapes.push((NO_PERMIT.to_owned(), no_permit));
    let mut out = Vec::new();
    for (denied_by, shape) in shapes {
        if let Some(env) = a.both_allow(&shape, &allowed_by_to).await? {
            let witness = new.witness(&env);
            let old_allows = witness::decide_on(&witness, old.sources)
                .ok()
                .map(|d| d.allowed);
            out.push(Flip {
                denied_by,
                witness,
                old_allows,
            });
        }
    }
    Ok(out)
}

/// A forbid policy with its effect turned to permit: it allows exactly where the
/// forbid matches.
fn as_permit(p: &Policy) -> Result<Policy, String> {
    let mut j =
        serde_json::to_value(p.to_json().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    j["effect"] = "permit".into();
    Policy::from_json(Some(p.id().clone()), j).map_err(|e| e.to_string())
}
