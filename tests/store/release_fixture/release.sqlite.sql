BEGIN TRANSACTION;
CREATE TABLE data_records (
	table_name VARCHAR(63) NOT NULL, 
	id VARCHAR(32) NOT NULL, 
	created_by VARCHAR(32), 
	created_at FLOAT NOT NULL, 
	updated_at FLOAT NOT NULL, 
	data TEXT NOT NULL, 
	PRIMARY KEY (table_name, id)
);
INSERT INTO "data_records" VALUES('notes','01a22c5fe41b0000017d685721d4',NULL,1796040811.547,1796040811.547,'{"text":"first","n":0,"tags":["a","ü"],"nested":{"x":0}}');
INSERT INTO "data_records" VALUES('notes','01a22c5fe42a0000a6523896210b','01a22c5fe3fd0000e80fc89e9aaa',1796040811.562,1796040811.562,'{"text":"second","n":1,"tags":["a","ü"],"nested":{"x":1}}');
INSERT INTO "data_records" VALUES('notes','01a22c5fe4320000bf2a8a48e5bc','01a22c5fe3fd0000e80fc89e9aaa',1796040811.57,1796040811.57,'{"text":"third","n":2,"tags":["a","ü"],"nested":{"x":2}}');
CREATE TABLE data_tables (
	name VARCHAR(63) NOT NULL, 
	read_acl VARCHAR(16) NOT NULL, 
	write_acl VARCHAR(16) NOT NULL, 
	created_at FLOAT NOT NULL, 
	updated_at FLOAT NOT NULL, 
	PRIMARY KEY (name)
);
INSERT INTO "data_tables" VALUES('notes','authenticated','owner',1796040811.502,1796040811.502);
INSERT INTO "data_tables" VALUES('empty','admin','admin',1796040811.575,1796040811.575);
CREATE TABLE data_tokens (
	token_hash VARCHAR(64) NOT NULL, 
	user_id VARCHAR(32) NOT NULL, 
	created_at FLOAT NOT NULL, 
	expires_at FLOAT NOT NULL, 
	PRIMARY KEY (token_hash)
);
INSERT INTO "data_tokens" VALUES('c660e071ddd1b3b1330de259429b803ce3ffe85e3783252fb5a946fe468803fc','01a22c5fe3fd0000e80fc89e9aaa',1.79604081152196359632e+09,1.7966456115219635964e+09);
INSERT INTO "data_tokens" VALUES('3d8b31c6424ce7320f86f3222a3e6cdde5162a2a5090e240e48c727e860dfe2b','01a22c5fe4110000e702135f1b24',1796040811.53801,1796645611.53801);
CREATE TABLE data_users (
	id VARCHAR(32) NOT NULL, 
	username VARCHAR(64) NOT NULL, 
	password_hash VARCHAR(255) NOT NULL, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (username)
);
INSERT INTO "data_users" VALUES('01a22c5fe3fd0000e80fc89e9aaa','alice','$argon2id$v=19$m=1024,t=1,p=1$7/QgDe2b24LE3qOha54HMg$1T2ZiqtI5tnQGRuoWE3ny2J1+/gBZ9/080G2KmZQ2e4',1.79604081151799368858e+09);
INSERT INTO "data_users" VALUES('01a22c5fe4110000e702135f1b24','bob','$argon2id$v=19$m=1024,t=1,p=1$E0Igj9zuBU0B1zXPzXytkA$cQFQj9CPcfvL9LEFwDdv/OJ6GWq6johOwlEa/McEJJ8',1.79604081153728318206e+09);
CREATE TABLE functions (
	name VARCHAR(63) NOT NULL, 
	active_version INTEGER, 
	last_version INTEGER NOT NULL, 
	created_at FLOAT NOT NULL, 
	updated_at FLOAT NOT NULL, 
	PRIMARY KEY (name)
);
INSERT INTO "functions" VALUES('hello',2,3,1.79604081140920424468e+09,1.79604081144627499575e+09);
INSERT INTO "functions" VALUES('other',1,1,1.79604081147633385653e+09,1.79604081148175692556e+09);
CREATE TABLE invocations (
	id VARCHAR(32) NOT NULL, 
	function VARCHAR(63) NOT NULL, 
	version INTEGER, 
	mode VARCHAR(8) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	cold BOOLEAN, 
	instance_id VARCHAR(32), 
	created_at FLOAT NOT NULL, 
	started_at FLOAT, 
	finished_at FLOAT, 
	duration_ms FLOAT, 
	event TEXT, 
	result TEXT, 
	error TEXT, 
	logs TEXT, 
	next_attempt_at FLOAT, 
	expires_at FLOAT, 
	owner VARCHAR(64), 
	PRIMARY KEY (id)
);
INSERT INTO "invocations" VALUES('01a22c5fe3e30000c0263ee439b7','hello',2,'sync','succeeded',1,1,'inst1',1.79604081149166703223e+09,1.79604081149166703223e+09,1.79604081150166702265e+09,10.0,NULL,'{"hello": "wörld"}',NULL,'out
',NULL,NULL,NULL);
INSERT INTO "invocations" VALUES('01a22c5fe3e3000195a9ed5404a8','hello',2,'sync','failed',1,0,'inst1',1.79604081149166703223e+09,1.79604081149166703223e+09,1.79604081151166701316e+09,20.0,NULL,NULL,'{"type": "ValueError", "message": "bad", "stack": "..."}','err
',NULL,NULL,NULL);
INSERT INTO "invocations" VALUES('01a22c5fe3e300028ddc50f4c016','hello',2,'async','queued',0,NULL,NULL,1.79604081149166703223e+09,NULL,NULL,NULL,'{"n": 1}',NULL,NULL,NULL,1.79604441149166703219e+09,1.79604471149166703227e+09,NULL);
CREATE TABLE versions (
	function VARCHAR(63) NOT NULL, 
	number INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	runtime VARCHAR(32) NOT NULL, 
	handler VARCHAR(255) NOT NULL, 
	memory_mb INTEGER NOT NULL, 
	timeout_s FLOAT NOT NULL, 
	env TEXT NOT NULL, 
	resident INTEGER NOT NULL, 
	public BOOLEAN NOT NULL, 
	bundle_hash VARCHAR(64) NOT NULL, 
	bundle_bytes INTEGER NOT NULL, 
	layer_key VARCHAR(64), 
	build_log TEXT NOT NULL, 
	error TEXT, 
	created_at FLOAT NOT NULL, 
	finished_at FLOAT, 
	PRIMARY KEY (function, number), 
	FOREIGN KEY(function) REFERENCES functions (name) ON DELETE CASCADE
);
INSERT INTO "versions" VALUES('hello',1,'ready','python3.11','index.main',128,10.0,'{"GREETING":"hi 1"}',0,0,'0000000000000000000000000000000000000000000000000000000000000001',123,NULL,'built 1
',NULL,1.79604081140920424468e+09,1.79604081143141603468e+09);
INSERT INTO "versions" VALUES('hello',2,'ready','python3.11','index.main',128,10.0,'{"GREETING":"hi 2"}',0,0,'0000000000000000000000000000000000000000000000000000000000000002',123,NULL,'built 2
',NULL,1.7960408114351036549e+09,1.79604081144329285626e+09);
INSERT INTO "versions" VALUES('hello',3,'failed','python3.11','index.main',128,10.0,'{}',0,0,'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',123,NULL,'pip failed
','build failed',1.79604081144627499575e+09,1.79604081146164155004e+09);
INSERT INTO "versions" VALUES('other',1,'ready','python3.11','index.main',256,10.0,'{}',0,0,'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee',123,'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa','',NULL,1.79604081147633385653e+09,1.79604081148175692556e+09);
CREATE INDEX ix_invocations_function_created ON invocations (function, created_at);
CREATE INDEX ix_invocations_status_next ON invocations (status, next_attempt_at);
CREATE INDEX ix_data_records_table_created_by ON data_records (table_name, created_by);
CREATE INDEX ix_data_records_table_created_at ON data_records (table_name, created_at);
CREATE INDEX ix_data_tokens_user ON data_tokens (user_id);
COMMIT;
