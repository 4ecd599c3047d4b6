-- +goose Up
-- Whom to write to about an order, learnt from OrderCreated.
CREATE TABLE recipients (
    order_id    uuid PRIMARY KEY,
    customer_id text NOT NULL,
    email       text NOT NULL CHECK (email <> ''),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per email an order deserves, sent or not. An email whose
-- recipient is not known yet is pending: no address, no sent_at.
CREATE TABLE emails (
    order_id   uuid NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('order_shipped', 'order_cancelled')),
    to_address text,
    subject    text NOT NULL,
    body       text NOT NULL,
    sent_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, kind),
    CHECK ((to_address IS NULL) = (sent_at IS NULL))
);

CREATE INDEX emails_pending ON emails (order_id) WHERE sent_at IS NULL;

-- +goose Down
DROP TABLE emails;
DROP TABLE recipients;
