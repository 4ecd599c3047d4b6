-- +goose Up
-- A payment CANCELLED is a tombstone: the order was cancelled before payment
-- saw its OrderCreated (OrderCancelled came first, or OrderCreated is a
-- dead letter replayed late), so that a late OrderCreated charges nothing.
-- It shares the primary key with real payments, so a charge and a tombstone
-- of the same order can never both commit. It holds no money: the ledger of
-- 00010 stays balance = sum(deposits) - sum(payments CHARGED).
ALTER TABLE payments
    DROP CONSTRAINT payments_status_check,
    ADD CONSTRAINT payments_status_check CHECK (status IN ('CHARGED', 'FAILED', 'REFUNDED', 'CANCELLED')),
    ADD CONSTRAINT payments_cancelled_holds_nothing CHECK (status <> 'CANCELLED' OR amount_cents = 0);

-- +goose Down
DELETE FROM payments WHERE status = 'CANCELLED';
ALTER TABLE payments
    DROP CONSTRAINT payments_cancelled_holds_nothing,
    DROP CONSTRAINT payments_status_check,
    ADD CONSTRAINT payments_status_check CHECK (status IN ('CHARGED', 'FAILED', 'REFUNDED'));
