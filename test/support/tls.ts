/**
 * Throwaway TLS material made with the openssl CLI: a CA, server certificates
 * it signs for given subject alternative names, and a second, unrelated CA.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface IssuedCertificate {
  readonly cert: string;
  readonly key: string;
}

export interface TestCa {
  /** The CA certificate's file, for sslrootcert. */
  readonly certFile: string;
  issue(name: string, subjectAltName: string): IssuedCertificate;
}

function openssl(dir: string, args: readonly string[]): void {
  const run = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${run.stderr}`);
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A CA in `dir` named `name`; its certificates' CN never matches a host, so only SANs count. */
export function makeCa(dir: string, name: string): TestCa {
  openssl(dir, ['req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return {
    certFile: path.join(dir, `${name}.crt`),
    issue(server, subjectAltName) {
      writeFileSync(path.join(dir, `${server}.ext`), `subjectAltName=${subjectAltName}\nextendedKeyUsage=serverAuth\n`);
      openssl(dir, ['req', ...EC, '-keyout', `${server}.key`, '-out', `${server}.csr`, '-subj', `/CN=${server}-not-a-host`]);
      openssl(dir, ['x509', '-req', '-in', `${server}.csr`, '-CA', `${name}.crt`, '-CAkey', `${name}.key`, '-CAcreateserial',
        '-out', `${server}.crt`, '-days', '2', '-extfile', `${server}.ext`]);
      return { cert: readFileSync(path.join(dir, `${server}.crt`), 'utf8'), key: readFileSync(path.join(dir, `${server}.key`), 'utf8') };
    },
  };
}
