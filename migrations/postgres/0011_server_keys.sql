-- Keys of the server itself, made on first use: `audit-signing` signs audit exports (Ed25519
-- secret, hex). Shared by every process on the database.
CREATE TABLE server_keys (
    name       TEXT   PRIMARY KEY,
    secret     TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
