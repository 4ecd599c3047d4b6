-- +goose Up

-- The balance right after each deposit, so a deposit repeated with its
-- Idempotency-Key is answered as it was the first time. Empty for the
-- deposits made before this column.
ALTER TABLE deposits ADD COLUMN balance_after_cents bigint CHECK (balance_after_cents >= 0);

-- One row per Idempotency-Key of POST /accounts/{id}/deposits, written in
-- the transaction of the deposit. The key row is inserted first, so a
-- concurrent request with the same key waits on the primary key until this
-- one commits (then reads its deposit) or rolls back (then makes its own).
-- deposit_id is set later in the same transaction, once the deposit row
-- exists: a committed row always has it.
CREATE TABLE deposit_idempotency_keys (
    key          text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    request_hash text NOT NULL,
    deposit_id   bigint REFERENCES deposits (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE deposit_idempotency_keys;
ALTER TABLE deposits DROP COLUMN balance_after_cents;
