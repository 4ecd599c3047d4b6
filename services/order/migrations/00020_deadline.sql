-- +goose Up

-- Every saga ends: an order gets a deadline when it is placed (created_at +
-- SAGA_DEADLINE). The sweeper marks a non-terminal order past its deadline
-- expired (expired_at, once) and emits OrderExpired in the same
-- transaction; the order keeps its status until shipping answers
-- (ShipmentCancelled cancels it with reason timed_out).
--
-- traceparent is the W3C trace context of the request that placed the order
-- (empty when it was not traced), so that the deadline's events join the
-- order's trace as every other event of the saga does.
ALTER TABLE orders
    ADD COLUMN deadline    timestamptz,
    ADD COLUMN expired_at  timestamptz,
    ADD COLUMN traceparent text NOT NULL DEFAULT '';

-- Orders placed before this migration: a saga still open gets the default
-- deadline (5 minutes) from now, so it ends too; a finished one gets the
-- deadline it would have had, for the record (it is never expired).
UPDATE orders SET deadline = CASE
    WHEN status IN ('SHIPPED', 'CANCELLED') THEN created_at + interval '5 minutes'
    ELSE now() + interval '5 minutes'
END;

ALTER TABLE orders ALTER COLUMN deadline SET NOT NULL;

-- What the sweeper looks for: the open orders not yet expired, by deadline.
CREATE INDEX orders_due ON orders (deadline)
    WHERE expired_at IS NULL AND status IN ('PENDING', 'PAID', 'RESERVED');

-- +goose Down
DROP INDEX orders_due;
ALTER TABLE orders DROP COLUMN traceparent, DROP COLUMN expired_at, DROP COLUMN deadline;
