-- Keys of the MCP server beside the REST keys: which surface a key opens (`rest` or `mcp`) and,
-- for MCP keys, whether it may use the write tools (0 or 1).
ALTER TABLE rm_api_keys ADD COLUMN kind TEXT NOT NULL DEFAULT 'rest';
ALTER TABLE rm_api_keys ADD COLUMN allow_writes BIGINT NOT NULL DEFAULT 0;
