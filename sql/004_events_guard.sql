-- Events are written once and never rewritten. Applied by `python -m pipeline.ops.setup_db` on
-- MariaDB, where the job's account must hold UPDATE on every column of `events` for its
-- no-op upsert (see 002_pipeline_user.sql): this trigger lets that no-op through and refuses
-- any UPDATE that would change a value. (MySQL 8 grants UPDATE (event_id) alone instead.)
DROP TRIGGER IF EXISTS events_never_rewritten;
CREATE TRIGGER events_never_rewritten BEFORE UPDATE ON events FOR EACH ROW
  IF NOT (NEW.event_id <=> OLD.event_id AND NEW.user_id <=> OLD.user_id
          AND NEW.product_id <=> OLD.product_id AND NEW.event_type <=> OLD.event_type
          AND NEW.price <=> OLD.price AND NEW.event_time <=> OLD.event_time)
  THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'events are never rewritten'; END IF;
