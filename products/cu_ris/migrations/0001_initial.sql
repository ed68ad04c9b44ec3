-- cu-ris schema 1 (release 1.0): one row per order (accession).
-- message is the last HL7 message accepted for the order, as received; received_at (UTC ISO 8601)
-- and control_id (its MSH-10) belong to that message.
CREATE TABLE orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    accession TEXT NOT NULL UNIQUE,
    patient_id TEXT,
    patient_name TEXT,
    modality TEXT,
    station_aet TEXT,
    scheduled TEXT,
    procedure TEXT,
    study_uid TEXT,
    status TEXT NOT NULL CHECK (status IN ('scheduled', 'cancelled')),
    message TEXT NOT NULL,
    received_at TEXT NOT NULL,
    control_id TEXT
);
CREATE INDEX orders_received_at ON orders (received_at);
