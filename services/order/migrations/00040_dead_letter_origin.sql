-- +goose Up
-- A message can be dead-lettered twice: the consumer writes the dead letter,
-- then commits the message's offset, and a crash, a broker restart or a
-- rebalance in between redelivers it. Both copies carry the same
-- dlq.original.* headers, and they are one letter: order_dead_letters is
-- now keyed by the letter's origin (the consumer group and the original
-- topic, partition and offset; a letter that does not say where it came
-- from is its own origin), and copies lists the positions of every copy
-- recorded. dlq_* stays the first copy's position, still unique. The same
-- table as pkg/deadletter.Schema.
ALTER TABLE order_dead_letters
    ADD COLUMN original_topic     text,
    ADD COLUMN original_partition integer,
    ADD COLUMN original_offset    bigint,
    ADD COLUMN copies             text[];

-- The rows so far did not keep the dlq.original.* headers, so each is its
-- own origin, and their copies are told by what copies share: the order,
-- the group, the event id and the replay count (a replay that failed again
-- has a higher one, and is another letter). A row without an event id is
-- kept as it is. The oldest failure stays, listing every copy's position.
UPDATE order_dead_letters SET
    original_topic = dlq_topic, original_partition = dlq_partition, original_offset = dlq_offset,
    copies = ARRAY[dlq_topic || '/' || dlq_partition || '/' || dlq_offset];

WITH copy AS (
    SELECT dlq_topic, dlq_partition, dlq_offset,
        row_number() OVER w AS n,
        array_agg(dlq_topic || '/' || dlq_partition || '/' || dlq_offset) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS every
    FROM order_dead_letters
    WHERE event_id <> ''
    WINDOW w AS (PARTITION BY order_id, consumer_group, event_id, replay_count
                 ORDER BY failed_at NULLS LAST, dlq_topic, dlq_partition, dlq_offset)
), kept AS (
    UPDATE order_dead_letters d SET copies = copy.every
    FROM copy
    WHERE copy.n = 1 AND (d.dlq_topic, d.dlq_partition, d.dlq_offset) = (copy.dlq_topic, copy.dlq_partition, copy.dlq_offset)
)
DELETE FROM order_dead_letters d
USING copy
WHERE copy.n > 1 AND (d.dlq_topic, d.dlq_partition, d.dlq_offset) = (copy.dlq_topic, copy.dlq_partition, copy.dlq_offset);

ALTER TABLE order_dead_letters
    ALTER COLUMN original_topic SET NOT NULL,
    ALTER COLUMN original_partition SET NOT NULL,
    ALTER COLUMN original_offset SET NOT NULL,
    ALTER COLUMN copies SET NOT NULL,
    DROP CONSTRAINT order_dead_letters_pkey,
    ADD PRIMARY KEY (consumer_group, original_topic, original_partition, original_offset),
    ADD UNIQUE (dlq_topic, dlq_partition, dlq_offset);

-- +goose Down
-- The copies folded into one row stay folded: only the first copy's row is
-- left.
ALTER TABLE order_dead_letters
    DROP CONSTRAINT order_dead_letters_pkey,
    DROP CONSTRAINT order_dead_letters_dlq_topic_dlq_partition_dlq_offset_key,
    ADD PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset),
    DROP COLUMN original_topic,
    DROP COLUMN original_partition,
    DROP COLUMN original_offset,
    DROP COLUMN copies;
