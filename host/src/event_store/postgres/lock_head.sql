-- Taken first by every writing transaction: the row lock is held until commit, so
-- writers on every host commit one after another and see each other's commits.
SELECT position FROM tessera_head WHERE id FOR UPDATE
