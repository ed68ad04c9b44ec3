-- cu-ris schema 2 (release 1.1): order changes (XO).
-- orders.revision counts the versions of an order (1, then +1 per XO); orders.updated_at (UTC ISO 8601)
-- is set on every change; order_events has one row per accepted NW, XO or CA.
ALTER TABLE orders ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
ALTER TABLE orders ADD COLUMN updated_at TEXT;
UPDATE orders SET updated_at = received_at;
CREATE INDEX orders_updated_at ON orders (updated_at);
CREATE TABLE order_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    accession TEXT NOT NULL,
    control TEXT NOT NULL,
    received_at TEXT NOT NULL,
    control_id TEXT
);
CREATE INDEX order_events_accession ON order_events (accession);
-- Schema 1 kept only the last message of each order (NW, or CA once cancelled): one event per order.
INSERT INTO order_events (accession, control, received_at, control_id)
    SELECT accession, CASE status WHEN 'cancelled' THEN 'CA' ELSE 'NW' END, received_at, control_id
    FROM orders ORDER BY id;
