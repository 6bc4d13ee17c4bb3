//! `AuthorizeBatch`: several decisions against one snapshot, answered in order.
//! Every request is checked before any is decided, so a malformed item fails the
//! whole batch with INVALID_ARGUMENT naming `requests[i].<field>`.

use super::authorize::decide_and_log;
use super::call::{CallMeta, Vakt};
use super::error::CallError;
use crate::decision::Query;
use crate::proto;

pub(super) async fn handle(
    vakt: &Vakt,
    req: proto::AuthorizeBatchRequest,
    meta: &CallMeta,
) -> Result<proto::AuthorizeBatchResponse, CallError> {
    let got = req.requests.len();
    let max = vakt.options.load().max_batch;
    if got > max {
        return Err(CallError::BatchTooLarge { got, max });
    }
    // One snapshot for the whole batch: the newest data any item asks for.
    let min = req
        .requests
        .iter()
        .map(|r| r.min_data_sequence)
        .max()
        .unwrap_or(0);
    let (snap, stale) = vakt.snapshot_for(min).await;
    let queries = req
        .requests
        .into_iter()
        .enumerate()
        .map(|(i, r)| Query::check(&snap, r.into(), &format!("requests[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;
    // Submit every record first, so a durable sink writes them in one group.
    let (responses, receipts): (Vec<_>, Vec<_>) = queries
        .iter()
        .map(|q| decide_and_log(vakt, &snap, q, stale.as_deref(), meta, true))
        .unzip();
    for r in receipts {
        r.wait().await?;
    }
    Ok(proto::AuthorizeBatchResponse { responses })
}
