import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { planObjectReplay, splitStatements } from '../../src/sinks/postgres/ddl-objects.js';

describe('DDL objects replayed as text', () => {
  it('counts statements, skipping quotes, dollar quotes and comments', () => {
    assert.deepEqual(splitStatements(`CREATE VIEW v AS SELECT 1;`), ['CREATE VIEW v AS SELECT 1']);
    assert.equal(splitStatements(`CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $b$ BEGIN RETURN 1; END $b$`).length, 1);
    assert.equal(splitStatements(`CREATE VIEW "a;b" AS SELECT ';' AS x, 'it''s;' AS y -- ; comment\n /* ; */`).length, 1);
    assert.equal(splitStatements(`CREATE VIEW a AS SELECT 1; CREATE VIEW b AS SELECT 2`).length, 2);
    assert.deepEqual(splitStatements(`-- lead\nCREATE VIEW v AS SELECT 1;;  `), ['CREATE VIEW v AS SELECT 1']);
  });

  it('replays only the statement the tag names, under the captured search_path, and restores the session path', () => {
    const ok = planObjectReplay('CREATE VIEW', 'CREATE OR REPLACE VIEW v AS SELECT 1', 'app, public', '"$user", public');
    assert.ok(ok.ok);
    assert.deepEqual(ok.steps.map((s) => s.sql), [
      `SELECT pg_catalog.set_config('search_path', 'app, public', true)`,
      'CREATE OR REPLACE VIEW v AS SELECT 1',
      `SELECT pg_catalog.set_config('search_path', '"$user", public', true)`,
    ]);
    const inDo = planObjectReplay('CREATE VIEW', 'DO $$ BEGIN CREATE VIEW v AS SELECT 1; END $$', 'public', 'public');
    assert.ok(!inDo.ok && /not that statement/.test(inDo.reason));
    const two = planObjectReplay('CREATE FUNCTION', 'CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$; SELECT 1', 'public', 'public');
    assert.ok(!two.ok && /2 statements/.test(two.reason));
    const definer = planObjectReplay('CREATE FUNCTION', 'CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY   DEFINER AS $$ SELECT 1 $$', 'public', 'public');
    assert.ok(!definer.ok && /SECURITY DEFINER/.test(definer.reason));
  });
});
