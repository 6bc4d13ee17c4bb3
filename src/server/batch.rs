//! `AuthorizeBatch`: several decisions against one snapshot, answered in order.
//! Every request is checked before any is decided, so a malformed item fails the
//! whole batch with INVALID_ARGUMENT naming `requests[i].<field>`.

use super::authorize::decide_and_log;
use super::call::Vakt;
use super::dispatch::{Call, Caller, Gate};
use super::error::CallError;
use super::metrics::Method;
use crate::decision::Query;
use crate::proto;

impl Call for proto::AuthorizeBatchRequest {
    type Answer = proto::AuthorizeBatchResponse;
    const METHOD: Method = Method::AuthorizeBatch;
    const GATE: Gate = Gate::Decision;

    async fn handle(self, vakt: &Vakt, caller: &Caller) -> Result<Self::Answer, CallError> {
        let got = self.requests.len();
        let max = vakt.options().max_batch;
        if got > max {
            return Err(CallError::BatchTooLarge { got, max });
        }
        // One snapshot for the whole batch: the newest data any item asks for.
        let min = self
            .requests
            .iter()
            .map(|r| r.min_data_sequence)
            .max()
            .unwrap_or(0);
        let (snap, stale) = vakt.snapshot_for(min).await;
        let queries = self
            .requests
            .into_iter()
            .enumerate()
            .map(|(i, r)| Query::check(&snap, r.into(), &format!("requests[{i}].")))
            .collect::<Result<Vec<_>, _>>()?;
        // Submit every record first, so a durable sink writes them in one group.
        let (responses, receipts): (Vec<proto::AuthorizeResponse>, Vec<_>) = queries
            .iter()
            .map(|q| {
                let (answer, receipt) =
                    decide_and_log(vakt, &snap, q, stale.as_deref(), &caller.meta, true);
                (answer.into(), receipt)
            })
            .unzip();
        for r in receipts {
            r.wait().await?;
        }
        Ok(proto::AuthorizeBatchResponse { responses })
    }
}
