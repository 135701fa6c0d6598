//! The commit a command runs for, as lineage: from the CI context, else from `git`.

use gantry_core::GitLineage;

use crate::commands::Session;

/// The commit being built: from the CI context, else from `git` in the
/// working directory. Credentials in a remote URL are dropped.
pub(crate) fn git_lineage(session: &Session<'_>) -> Option<GitLineage> {
    if let Some(commit) = &session.context.sha {
        return Some(GitLineage {
            repository: session.context.repository.clone(),
            commit: commit.clone(),
            git_ref: session.context.git_ref.clone(),
        });
    }
    let git = |args: &[&str]| git_output(None, args);
    let commit = git(&["rev-parse", "HEAD"])?;
    let repository =
        git(&["config", "--get", "remote.origin.url"]).map(|url| without_credentials(&url));
    let git_ref = git(&["symbolic-ref", "-q", "HEAD"]);
    Some(GitLineage {
        repository,
        commit,
        git_ref,
    })
}

/// What `git ARGS` prints (trimmed) in `dir` (or here), when it succeeds
/// and prints something.
pub(crate) fn git_output(dir: Option<&std::path::Path>, args: &[&str]) -> Option<String> {
    let mut command = std::process::Command::new("git");
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|text| !text.is_empty())
}

/// `https://user:token@host/path` → `https://host/path`.
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) if !userinfo.contains('/') => format!("{scheme}://{host}"),
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_credentials;

    #[test]
    fn remote_urls_lose_their_credentials() {
        assert_eq!(
            without_credentials("https://x-access-token:ghs_abc@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            without_credentials("git@github.com:o/r.git"),
            "git@github.com:o/r.git"
        );
        assert_eq!(
            without_credentials("https://github.com/o/r"),
            "https://github.com/o/r"
        );
    }
}
