-- The new head, and a notification of it to every host listening (delivered when the
-- transaction commits, never before).
WITH moved AS (
    UPDATE tessera_head SET position = $1 WHERE id RETURNING position
)
SELECT pg_notify('tessera_head', position::text) FROM moved
