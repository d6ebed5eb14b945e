//! The projects registry through the real aifactoryctl: add, list, show, remove,
//! import-legacy, provider detection and every refusal.

use std::path::{Path, PathBuf};

use aifactory_tests::Sandbox;
use aifactory_tests::git::init_repo;

fn repo(parent: &Path, name: &str, origin: Option<&str>) -> PathBuf {
    init_repo(&parent.join(name), "trunk", origin)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn add_then_show_is_immediately_visible_a_hundred_times() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let repos = sandbox.path().join("repos");
    for i in 0..100 {
        let path = repo(
            &repos,
            &format!("r{i}"),
            Some("https://github.com/org/r.git"),
        );
        let added = sandbox
            .ctl(&["projects", "add", s(&path), "--json"])
            .assert_ok()
            .json();
        let id = added["id"]
            .as_str()
            .expect("add --json has an id")
            .to_string();
        let shown = sandbox
            .ctl(&["projects", "show", &id, "--json"])
            .assert_ok()
            .json();
        assert_eq!(shown, added, "round {i}");
        assert_eq!(shown["path"], s(&path.canonicalize().unwrap()));
        assert_eq!(shown["provider"], "github");
    }
    let list = sandbox
        .ctl(&["projects", "list", "--json"])
        .assert_ok()
        .json();
    let items = list.as_array().expect("list --json is an array");
    assert_eq!(items.len(), 100);
    for item in items {
        for key in ["id", "name", "path", "provider"] {
            assert!(item.get(key).is_some(), "{key} missing in {item}");
        }
    }
}

#[test]
fn fields_provider_detection_and_manual_override() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let cases = [
        ("gh", Some("git@github.com:org/repo.git"), "github"),
        (
            "gl",
            Some("https://gitlab.example.org/team/repo.git"),
            "gitlab",
        ),
        (
            "az",
            Some("git@ssh.dev.azure.com:v3/org/project/repo"),
            "azure-devops",
        ),
        (
            "vs",
            Some("https://org.visualstudio.com/project/_git/repo"),
            "azure-devops",
        ),
        (
            "bb",
            Some("https://bitbucket.org/team/repo.git"),
            "bitbucket",
        ),
        (
            "self",
            Some("ssh://git@git.example.com:2222/repo.git"),
            "unknown",
        ),
        ("none", None, "unknown"),
    ];
    for (name, origin, provider) in cases {
        let path = repo(sandbox.path(), name, origin);
        let p = sandbox
            .ctl(&["projects", "add", s(&path), "--json"])
            .assert_ok()
            .json();
        assert_eq!(p["provider"], provider, "{name}");
        assert_eq!(p["detected_provider"], provider, "{name}");
        assert_eq!(p["provider_manual"], false);
        assert_eq!(p["name"], name);
        assert_eq!(p["default_branch"], "trunk");
        match origin {
            Some(url) => assert_eq!(p["origin_url"], url),
            None => assert!(p["origin_url"].is_null()),
        }
    }
    let path = repo(
        sandbox.path(),
        "mirror",
        Some("https://github.com/org/repo.git"),
    );
    let p = sandbox
        .ctl(&[
            "projects",
            "add",
            s(&path),
            "--name",
            "mirrored",
            "--provider",
            "gitlab",
            "--json",
        ])
        .assert_ok()
        .json();
    assert_eq!(p["provider"], "gitlab");
    assert_eq!(p["detected_provider"], "github");
    assert_eq!(p["provider_manual"], true);
    assert_eq!(p["name"], "mirrored");
    let text = sandbox
        .ctl(&["projects", "show", "mirrored"])
        .assert_ok()
        .stdout
        .clone();
    assert!(
        text.contains("gitlab (set by hand; origin says github)"),
        "{text}"
    );

    let bad = sandbox.ctl(&["projects", "add", s(&path), "--provider", "gitea"]);
    assert_eq!(bad.code, Some(2), "{bad:?}");
    assert!(
        bad.stderr
            .contains("use one of github, gitlab, azure-devops, bitbucket, unknown")
    );
}

#[test]
fn relative_paths_resolve_against_the_callers_directory() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let path = repo(sandbox.path(), "rel", None);
    let out = sandbox.ctl_with(&["projects", "add", "rel", "--json"], |cmd| {
        cmd.current_dir(sandbox.path());
    });
    out.assert_ok();
    assert_eq!(out.json()["path"], s(&path.canonicalize().unwrap()));
}

#[test]
fn every_bad_path_is_a_clear_error_naming_it() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let missing = sandbox.path().join("missing");
    let out = sandbox.ctl(&["projects", "add", s(&missing)]);
    assert_eq!(out.code, Some(4), "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("{} does not exist", missing.display())),
        "{out:?}"
    );

    let file = sandbox.path().join("file.txt");
    std::fs::write(&file, "x").unwrap();
    let out = sandbox.ctl(&["projects", "add", s(&file)]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains(&format!("{} is not a directory", file.display())),
        "{out:?}"
    );

    let plain = sandbox.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let out = sandbox.ctl(&["projects", "add", s(&plain)]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stderr
            .contains(&format!("{} is not a git work tree", plain.display())),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("not a git repository"),
        "git's own words reach the user: {out:?}"
    );

    let list = sandbox
        .ctl(&["projects", "list", "--json"])
        .assert_ok()
        .json();
    assert_eq!(
        list.as_array().unwrap().len(),
        0,
        "no refused project was recorded"
    );
}

#[test]
fn the_same_path_twice_is_a_conflict_naming_the_existing_project() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let path = repo(sandbox.path(), "twice", None);
    let first = sandbox
        .ctl(&["projects", "add", s(&path), "--json"])
        .assert_ok()
        .json();
    let again = sandbox.ctl(&["projects", "add", s(&path), "--name", "other"]);
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(
        again
            .stderr
            .contains("already registered as project `twice`"),
        "{again:?}"
    );
    assert!(
        again.stderr.contains(first["id"].as_str().unwrap()),
        "{again:?}"
    );

    let other = repo(sandbox.path(), "elsewhere", None);
    let clash = sandbox.ctl(&["projects", "add", s(&other), "--name", "twice"]);
    assert_eq!(clash.code, Some(1));
    assert!(
        clash
            .stderr
            .contains("a project named `twice` already exists"),
        "{clash:?}"
    );
}

#[test]
fn remove_forgets_the_project_and_never_touches_files() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let path = repo(sandbox.path(), "gone", None);
    std::fs::write(path.join("keep.txt"), "data").unwrap();
    sandbox.ctl(&["projects", "add", s(&path)]).assert_ok();
    let removed = sandbox.ctl(&["projects", "remove", "gone"]);
    removed.assert_ok();
    assert!(removed.stdout.contains("were not touched"));
    assert_eq!(
        std::fs::read_to_string(path.join("keep.txt")).unwrap(),
        "data"
    );
    assert!(path.join(".git").is_dir());
    let show = sandbox.ctl(&["projects", "show", "gone"]);
    assert_eq!(show.code, Some(4), "{show:?}");
    assert!(show.stderr.contains("no project with id or name `gone`"));
    let again = sandbox.ctl(&["projects", "remove", "gone"]);
    assert_eq!(again.code, Some(4));
}

#[test]
fn import_legacy_is_idempotent_and_explains_every_skip() {
    let sandbox = Sandbox::new();
    let _daemon = sandbox.daemon().start();
    let a = repo(
        sandbox.path(),
        "alpha",
        Some("https://github.com/o/alpha.git"),
    );
    let b = repo(sandbox.path(), "beta", None);
    let plain = sandbox.path().join("not-git");
    std::fs::create_dir(&plain).unwrap();
    let legacy_dir = sandbox.path().join("home/.aifactory");
    std::fs::create_dir_all(&legacy_dir).unwrap();
    let legacy = serde_json::json!({
        "projects": [
            {"id": "1", "name": "Alpha", "path": s(&a)},
            {"id": "2", "root": s(&b)},
            {"id": "3", "name": "ghost", "path": s(&sandbox.path().join("ghost"))},
            {"id": "4", "name": "plain", "path": s(&plain)},
        ]
    });
    std::fs::write(legacy_dir.join("projects.json"), legacy.to_string()).unwrap();

    // Default file: ~/.aifactory/projects.json of the caller.
    let first = sandbox
        .ctl(&["projects", "import-legacy", "--json"])
        .assert_ok()
        .json();
    let imported: Vec<&str> = first["imported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(imported, ["Alpha", "beta"]);
    let skipped = first["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2, "{first}");
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    assert!(
        skipped[1]["reason"]
            .as_str()
            .unwrap()
            .contains("is not a git work tree")
    );

    let second = sandbox
        .ctl(&["projects", "import-legacy", "--json"])
        .assert_ok()
        .json();
    assert_eq!(second["imported"].as_array().unwrap().len(), 0, "{second}");
    let reasons: Vec<&str> = second["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.contains("already registered"))
            .count(),
        2,
        "{reasons:?}"
    );
    let list = sandbox
        .ctl(&["projects", "list", "--json"])
        .assert_ok()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 2);

    let text = sandbox
        .ctl(&["projects", "import-legacy"])
        .assert_ok()
        .stdout
        .clone();
    assert!(text.contains("0 imported, 4 skipped"), "{text}");
}

#[test]
fn projects_survive_a_restart() {
    let sandbox = Sandbox::new();
    let path = repo(sandbox.path(), "durable", None);
    {
        let _daemon = sandbox.daemon().start();
        sandbox.ctl(&["projects", "add", s(&path)]).assert_ok();
    }
    // Dropping the daemon SIGKILLs it: the commit had to be on disk already.
    let _daemon = sandbox.daemon().log_name("again").start();
    let shown = sandbox
        .ctl(&["projects", "show", "durable", "--json"])
        .assert_ok()
        .json();
    assert_eq!(shown["path"], s(&path.canonicalize().unwrap()));
}
