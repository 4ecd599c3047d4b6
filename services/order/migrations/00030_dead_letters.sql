-- +goose Up
-- The dead letters that concern orders, from every consumer group's
-- <group>.dlq (the dead-letter watch worker, pkg/deadletter.Watch with
-- Recorder): while an order has one and has not ended, GET /orders/{id}
-- says it is stuck and why. One row per letter, keyed by its position, so
-- the watch recording a letter again changes nothing. The same table as
-- pkg/deadletter.Schema, which the package's tests create.
CREATE TABLE order_dead_letters (
    dlq_topic      text        NOT NULL,
    dlq_partition  integer     NOT NULL,
    dlq_offset     bigint      NOT NULL,
    order_id       uuid        NOT NULL,
    consumer_group text        NOT NULL,
    event_type     text        NOT NULL,
    event_id       text        NOT NULL,
    reason         text        NOT NULL,
    error          text        NOT NULL,
    failed_at      timestamptz,
    replay_count   integer     NOT NULL DEFAULT 0,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);
CREATE INDEX order_dead_letters_order_id ON order_dead_letters (order_id, failed_at);

-- +goose Down
DROP TABLE order_dead_letters;
