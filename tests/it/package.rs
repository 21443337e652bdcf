//! The Debian package's files stay in step with the repository's (the package itself is built
//! and installed by `scripts/package-test.sh`, which needs cargo-deb and root; this needs
//! nothing, so a key added to `kaffediem.toml` alone fails here, in every `cargo test`).

const DOCUMENTED: &str = include_str!("../../kaffediem.toml");
const PACKAGED: &str = include_str!("../../packaging/kaffediem.toml");
const LITESTREAM_EXAMPLE: &str = include_str!("../../packaging/litestream.yml");
const PACKAGED_DB: &str = "/var/lib/kaffediem/kaffediem.db";

#[test]
fn the_packaged_config_is_the_documented_one_with_the_packages_database_path() {
    let expected = DOCUMENTED.replace(
        "\npath = \"kaffediem.db\"\n",
        &format!("\npath = \"{PACKAGED_DB}\"\n"),
    );
    assert_ne!(
        expected, DOCUMENTED,
        "kaffediem.toml no longer has the default path line"
    );
    assert!(
        PACKAGED == expected,
        "packaging/kaffediem.toml differs from kaffediem.toml beyond database.path; regenerate it:\n  \
         sed 's|^path = \"kaffediem.db\"$|path = \"{PACKAGED_DB}\"|' kaffediem.toml > packaging/kaffediem.toml"
    );
}

#[test]
fn the_litestream_example_replicates_the_packaged_database() {
    assert!(
        LITESTREAM_EXAMPLE.contains(&format!("- path: {PACKAGED_DB}\n")),
        "packaging/litestream.yml must name {PACKAGED_DB}"
    );
    let unit = include_str!("../../packaging/kaffediem-litestream.service");
    assert!(unit
        .contains("ExecStart=/usr/bin/litestream replicate -config /etc/kaffediem/litestream.yml"));
    assert!(unit.contains("User=kaffediem"));
}
