-- +goose Up
CREATE TABLE shipments (
    order_id        uuid PRIMARY KEY,
    tracking_number text NOT NULL UNIQUE CHECK (tracking_number ~ '^SS[A-Z0-9]{12}$'),
    status          text NOT NULL CHECK (status IN ('SHIPPED')),
    items           jsonb NOT NULL DEFAULT '[]',
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE shipments;
