//! Opening the file and migrating it to `schema.sql`. CONTRACT STUB.
