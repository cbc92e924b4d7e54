-- Each stream's current version (0 if it has none): one backward step in the
-- (stream, version) index per stream.
SELECT s.stream,
       COALESCE((SELECT e.version FROM tessera_events e
                 WHERE e.stream = s.stream
                 ORDER BY e.version DESC LIMIT 1), 0)
FROM unnest($1::text[]) AS s(stream)
