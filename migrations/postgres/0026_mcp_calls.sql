-- MCP tool calls per key and minute, counted in the database so that the limit holds for the key
-- whichever process answers (operational like api_key_usage: not part of the log).
CREATE TABLE mcp_key_calls (
    key_id TEXT   NOT NULL,
    minute BIGINT NOT NULL,
    calls  BIGINT NOT NULL,
    PRIMARY KEY (key_id, minute)
);
