/**
 * The table the topology tests write on every node, and the probe that shows
 * whether a change came back to where it started: `applied` records each row
 * change made inside pgtide's apply sessions (an ENABLE REPLICA trigger fires
 * only under session_replication_role = replica, never for the application),
 * so a change applied on its own node of origin is an echo.
 */
export function echoProbeDdl(keyType: 'int' | 'bigint'): string {
  return `
  CREATE TABLE items (id ${keyType} PRIMARY KEY, node text NOT NULL, v int NOT NULL, note text);
  CREATE TABLE applied (id bigserial PRIMARY KEY, item ${keyType} NOT NULL, node text NOT NULL, op text NOT NULL);
  CREATE FUNCTION note_applied() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    IF TG_OP = 'DELETE' THEN
      INSERT INTO applied (item, node, op) VALUES (OLD.id, OLD.node, TG_OP);
      RETURN OLD;
    END IF;
    INSERT INTO applied (item, node, op) VALUES (NEW.id, NEW.node, TG_OP);
    RETURN NEW;
  END $$;
  CREATE TRIGGER note_applied AFTER INSERT OR UPDATE OR DELETE ON items FOR EACH ROW EXECUTE FUNCTION note_applied();
  ALTER TABLE items ENABLE REPLICA TRIGGER note_applied;
`;
}
