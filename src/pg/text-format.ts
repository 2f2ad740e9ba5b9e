/**
 * Session settings that fix the text form of values.
 *
 * pgoutput (without `binary`) and COPY write values with the session's
 * output settings, and the target reads them back with its own. A walsender
 * session picks up the source database's defaults (ALTER DATABASE … SET), so
 * a source with DateStyle 'SQL, DMY' would send 03/04/2024, which a target
 * with 'ISO, MDY' reads as March 4th, and extra_float_digits = 0 would round
 * floats. Both ends therefore pin these, as PostgreSQL's own subscriber does
 * for its walsender connection. TimeZone is pinned too, so that comparing a
 * timestamptz by its text form (REPLICA IDENTITY FULL on types without `=`)
 * sees the same text on both sides.
 */
export const TEXT_FORMAT_SETTINGS: Readonly<Record<string, string>> = {
  datestyle: 'ISO',
  intervalstyle: 'postgres',
  extra_float_digits: '3',
  timezone: 'UTC',
  lc_monetary: 'C',
  bytea_output: 'hex',
};
