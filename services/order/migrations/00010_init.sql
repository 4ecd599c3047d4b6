-- +goose Up

-- The order service's copy of the catalog, kept from inventory's
-- ProductUpdated events (event-carried state transfer). updated_at is the
-- time of the event that wrote the row, so an older event never overwrites
-- a newer one.
CREATE TABLE products (
    sku         text PRIMARY KEY CHECK (length(sku) BETWEEN 1 AND 64),
    name        text NOT NULL,
    price_cents bigint NOT NULL CHECK (price_cents BETWEEN 0 AND 100000000),
    updated_at  timestamptz NOT NULL
);

CREATE TABLE orders (
    id          uuid PRIMARY KEY,
    customer_id text NOT NULL CHECK (length(customer_id) BETWEEN 1 AND 64),
    email       text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    status      text NOT NULL CHECK (status IN ('PENDING', 'PAID', 'RESERVED', 'SHIPPED', 'CANCELLED')),
    -- Why a cancelled order was cancelled; empty for every other status.
    reason      text NOT NULL DEFAULT '' CHECK ((status = 'CANCELLED') = (reason <> '')),
    total_cents bigint NOT NULL CHECK (total_cents BETWEEN 0 AND 100000000),
    currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Prices are copied from the catalog when the order is placed: a later
-- price change does not change the order.
CREATE TABLE order_items (
    order_id         uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    sku              text NOT NULL CHECK (length(sku) BETWEEN 1 AND 64),
    quantity         integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    unit_price_cents bigint NOT NULL CHECK (unit_price_cents BETWEEN 0 AND 100000000),
    PRIMARY KEY (order_id, sku)
);

-- One row per Idempotency-Key of POST /orders, written in the transaction
-- that creates the order. The key row is inserted first, so a concurrent
-- request with the same key waits on the primary key until this one commits
-- (then reads its order) or rolls back (then creates its own); the foreign
-- key is therefore checked at commit.
CREATE TABLE idempotency_keys (
    key          text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    request_hash text NOT NULL,
    order_id     uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE order_items;
DROP TABLE orders;
DROP TABLE products;
