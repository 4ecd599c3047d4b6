-- +goose Up
-- Cancellation (OrderCancelled) adds two statuses. RELEASED: the order was
-- cancelled while its units were held, and they went back to available.
-- CANCELLED is a tombstone: the order was cancelled before inventory saw
-- its PaymentProcessed (the two travel on different topics), so a late
-- PaymentProcessed reserves nothing. A tombstone shares the primary key with
-- reservations, so a reservation and a tombstone of the same order can never
-- both commit; it holds no items.
ALTER TABLE reservations
    DROP CONSTRAINT reservations_status_check,
    ADD CONSTRAINT reservations_status_check CHECK (status IN ('RESERVED', 'REJECTED', 'SHIPPED', 'RELEASED', 'CANCELLED')),
    ADD CONSTRAINT reservations_cancelled_holds_nothing CHECK (status <> 'CANCELLED' OR items = '[]'::jsonb);

-- +goose Down
DELETE FROM reservations WHERE status = 'CANCELLED';
UPDATE reservations SET status = 'REJECTED' WHERE status = 'RELEASED';
ALTER TABLE reservations
    DROP CONSTRAINT reservations_cancelled_holds_nothing,
    DROP CONSTRAINT reservations_status_check,
    ADD CONSTRAINT reservations_status_check CHECK (status IN ('RESERVED', 'REJECTED', 'SHIPPED'));
