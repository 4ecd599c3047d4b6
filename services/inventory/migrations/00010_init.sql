-- +goose Up
-- The catalog and its stock. available is what can still be reserved;
-- reserved is held for paid orders until they ship. The CHECKs back up the
-- guards in the UPDATEs: stock can never go negative.
CREATE TABLE products (
    sku         text PRIMARY KEY,
    name        text NOT NULL,
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    available   integer NOT NULL CHECK (available >= 0),
    reserved    integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One reservation per order: the primary key makes reserving idempotent by
-- state. items is the order's lines as PaymentProcessed carried them.
CREATE TABLE reservations (
    order_id   uuid PRIMARY KEY,
    status     text NOT NULL CHECK (status IN ('RESERVED', 'REJECTED', 'SHIPPED')),
    items      jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE reservations;
DROP TABLE products;
