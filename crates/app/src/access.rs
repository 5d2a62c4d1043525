//! What keys did that the audit trail keeps without changing anything: refused requests of known
//! keys (`access.denied`) and the tools MCP keys called (`mcp.tool_called`).

use crate::streams::{access_stream, mcp_call_stream};
use crate::{new_id, App, CommandError};
use easm_events::{AccessDenied, Event, EventMeta, McpToolCalled, OrgId};

impl App {
    /// Each denial goes on a stream of its own, so denials never contend with each other.
    pub async fn record_denial(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        denied: AccessDenied,
    ) -> Result<(), CommandError> {
        let stream = access_stream(&new_id::<String>());
        self.create(org_id, meta, stream, vec![Event::AccessDenied(denied)])
            .await?;
        Ok(())
    }

    /// Each call goes on a stream of its own, as denials do.
    pub async fn record_tool_call(
        &self,
        meta: &EventMeta,
        org_id: &OrgId,
        call: McpToolCalled,
    ) -> Result<(), CommandError> {
        let stream = mcp_call_stream(&new_id::<String>());
        self.create(org_id, meta, stream, vec![Event::McpToolCalled(call)])
            .await?;
        Ok(())
    }
}
