//! Which pull-request provider hosts a repository, from its origin remote's URL. Shared so the
//! daemon (at registration) and `aifactoryctl doctor` (when checking) agree.

use crate::protocol::Provider;

/// The host of an HTTPS, SSH, git or scp-like (`user@host:path`) remote URL, lower-cased.
pub fn host_of(url: &str) -> Option<String> {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest,
        // scp-like: [user@]host:path (a colon before any slash)
        None => {
            let (before, _) = url.split_once(':')?;
            if before.contains('/') {
                return None;
            }
            before
        }
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(stripped) = host_port.strip_prefix('[') {
        stripped.split(']').next()?
    } else {
        host_port.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// github.com → GitHub; gitlab.com or any host with `gitlab` in its name → GitLab;
/// dev.azure.com, ssh.dev.azure.com, *.visualstudio.com → Azure DevOps; bitbucket.org →
/// Bitbucket; anything else → unknown.
pub fn detect(url: &str) -> Provider {
    let Some(host) = host_of(url) else {
        return Provider::Unknown;
    };
    let host = host.strip_prefix("www.").unwrap_or(&host);
    if host == "github.com" || host == "ssh.github.com" {
        Provider::Github
    } else if host.contains("gitlab") {
        Provider::Gitlab
    } else if host == "dev.azure.com"
        || host == "ssh.dev.azure.com"
        || host == "vs-ssh.visualstudio.com"
        || host.ends_with(".visualstudio.com")
    {
        Provider::AzureDevops
    } else if host == "bitbucket.org" {
        Provider::Bitbucket
    } else {
        Provider::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_world_url_shapes() {
        let table = [
            ("https://github.com/org/repo.git", Provider::Github),
            ("https://github.com/org/repo", Provider::Github),
            ("git@github.com:org/repo.git", Provider::Github),
            ("ssh://git@github.com/org/repo.git", Provider::Github),
            (
                "ssh://git@ssh.github.com:443/org/repo.git",
                Provider::Github,
            ),
            (
                "https://user:token@github.com/org/repo.git",
                Provider::Github,
            ),
            ("git://github.com/org/repo.git", Provider::Github),
            ("HTTPS://GitHub.com/Org/Repo", Provider::Github),
            ("https://gitlab.com/group/sub/repo.git", Provider::Gitlab),
            ("git@gitlab.com:group/repo.git", Provider::Gitlab),
            ("https://gitlab.example.org/team/repo.git", Provider::Gitlab),
            (
                "ssh://git@gitlab.internal:2222/team/repo.git",
                Provider::Gitlab,
            ),
            ("git@code-gitlab.corp:team/repo.git", Provider::Gitlab),
            (
                "https://dev.azure.com/org/project/_git/repo",
                Provider::AzureDevops,
            ),
            (
                "https://org@dev.azure.com/org/project/_git/repo",
                Provider::AzureDevops,
            ),
            (
                "git@ssh.dev.azure.com:v3/org/project/repo",
                Provider::AzureDevops,
            ),
            (
                "https://org.visualstudio.com/project/_git/repo",
                Provider::AzureDevops,
            ),
            (
                "org@vs-ssh.visualstudio.com:v3/org/project/repo",
                Provider::AzureDevops,
            ),
            ("https://bitbucket.org/team/repo.git", Provider::Bitbucket),
            ("git@bitbucket.org:team/repo.git", Provider::Bitbucket),
            ("https://git.example.com/repo.git", Provider::Unknown),
            ("https://notgithub.com/org/repo", Provider::Unknown),
            (
                "https://github.com.evil.example/org/repo",
                Provider::Unknown,
            ),
            ("/srv/git/repo.git", Provider::Unknown),
            ("../other", Provider::Unknown),
            ("file:///srv/git/repo.git", Provider::Unknown),
            ("", Provider::Unknown),
        ];
        for (url, expected) in table {
            assert_eq!(detect(url), expected, "{url}");
        }
    }

    #[test]
    fn hosts() {
        assert_eq!(host_of("git@github.com:o/r").as_deref(), Some("github.com"));
        assert_eq!(host_of("ssh://git@[::1]:22/r").as_deref(), Some("::1"));
        assert_eq!(host_of("/local/path"), None);
    }

    #[test]
    fn names_round_trip() {
        for p in Provider::ALL {
            assert_eq!(Provider::parse(p.as_str()), Some(p));
        }
    }
}
