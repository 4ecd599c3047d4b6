-- +goose Up
-- A shipment CANCELLED is a tombstone: the order will never ship. Shipping is
-- the saga's pivot, so it records this itself, on OrderExpired (it then
-- emits ShipmentCancelled) or on OrderCancelled, before any shipment, and an
-- InventoryReserved that comes later ships nothing. A tombstone shares the
-- primary key with shipments: a shipment and a tombstone of the same order
-- can never both commit, so exactly one of "shipped" or "cancelled" happens.
-- It has no tracking number; reason is why it will never ship.
ALTER TABLE shipments
    ALTER COLUMN tracking_number DROP NOT NULL,
    ADD COLUMN reason text,
    DROP CONSTRAINT shipments_status_check,
    ADD CONSTRAINT shipments_status_check CHECK (status IN ('SHIPPED', 'CANCELLED')),
    ADD CONSTRAINT shipments_tracked_iff_shipped CHECK ((status = 'SHIPPED') = (tracking_number IS NOT NULL)),
    ADD CONSTRAINT shipments_reason_iff_cancelled CHECK ((status = 'CANCELLED') = (reason IS NOT NULL));

-- +goose Down
DELETE FROM shipments WHERE status = 'CANCELLED';
ALTER TABLE shipments
    DROP CONSTRAINT shipments_reason_iff_cancelled,
    DROP CONSTRAINT shipments_tracked_iff_shipped,
    DROP CONSTRAINT shipments_status_check,
    ADD CONSTRAINT shipments_status_check CHECK (status IN ('SHIPPED')),
    DROP COLUMN reason,
    ALTER COLUMN tracking_number SET NOT NULL;
