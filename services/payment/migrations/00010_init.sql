-- +goose Up
-- The payment ledger. Every balance is auditable from the other two tables:
--   balance = deposits - charges + refunds
--           = sum(deposits) - sum(payments CHARGED or REFUNDED) + sum(payments REFUNDED)
--           = sum(deposits) - sum(payments CHARGED)
CREATE TABLE accounts (
    customer_id   text PRIMARY KEY,
    balance_cents bigint NOT NULL CHECK (balance_cents >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE deposits (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  text NOT NULL REFERENCES accounts (customer_id),
    amount_cents bigint NOT NULL CHECK (amount_cents > 0),
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX deposits_customer_id ON deposits (customer_id);

-- One payment per order: the primary key makes charging idempotent by state.
-- items is the order's lines as the OrderCreated event carried them, passed on
-- in PaymentProcessed.
CREATE TABLE payments (
    order_id     uuid PRIMARY KEY,
    customer_id  text NOT NULL,
    amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
    status       text NOT NULL CHECK (status IN ('CHARGED', 'FAILED', 'REFUNDED')),
    items        jsonb NOT NULL DEFAULT '[]',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payments_customer_id ON payments (customer_id);

-- +goose Down
DROP TABLE payments;
DROP TABLE deposits;
DROP TABLE accounts;
