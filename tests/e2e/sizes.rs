//! What a backup costs in the vault, counted honestly: `BytesStored` is every byte the backup
//! added to the vault folder, and a small database's first backup costs no more than the
//! `pg_dump -Fc` file an administrator would otherwise keep.

use std::path::Path;

use crate::support::{World, cluster, files_under, owned_database};

fn stored(job: &serde_json::Value) -> u64 {
    job["properties"]["result"]["bytesStored"].as_u64().unwrap()
}

/// The bytes of every file under the vault folder but its lock objects. Locks are the
/// vault's coordination state, not data: a backup's shared lock is gone when it ends, and
/// its instance lock is one object per instance that each backup replaces (it never
/// accumulates), so they are listed apart and checked to be no more than that.
fn vault_bytes(dir: &Path) -> (u64, Vec<String>) {
    let mut data = 0;
    let mut locks = Vec::new();
    for f in files_under(dir) {
        let rel = f.strip_prefix(dir).unwrap().display().to_string();
        if rel.starts_with("locks/") {
            locks.push(rel);
        } else {
            data += std::fs::metadata(&f).unwrap().len();
        }
    }
    locks.sort();
    (data, locks)
}

/// What the job reports stored is what the vault grew by, for a first backup (packs, index
/// files and the manifest) and for a second one that stores little data (where the manifest
/// and index file were most of the growth and used to go uncounted), and the recovery
/// point's own figure agrees with the job's.
#[test]
fn bytes_stored_is_what_the_vault_grew_by() {
    let w = World::new();
    let db = owned_database("sizes_growth", 3_000);
    let dir = w.vault_with_policy("V");
    let instance = w.protect("V", &db.name, &w.admin_secret(&db.name));

    let (empty, _) = vault_bytes(&dir);
    let first = w.backup("V", &instance);
    let (after_first, locks) = vault_bytes(&dir);
    assert_eq!(
        stored(&first),
        after_first - empty,
        "the first backup reported {} bytes stored; the vault grew by {}",
        stored(&first),
        after_first - empty
    );

    db.as_owner(
        "UPDATE public.rental SET returned = rented + interval '1 day' WHERE rental_id % 500 = 0",
    );
    let second = w.backup("V", &instance);
    let (after_second, locks_after) = vault_bytes(&dir);
    assert_eq!(
        stored(&second),
        after_second - after_first,
        "the second backup reported {} bytes stored; the vault grew by {}",
        stored(&second),
        after_second - after_first
    );
    eprintln!(
        "owned database: first backup grew the vault by {}, the second by {} (jobs: {}, {})",
        after_first - empty,
        after_second - after_first,
        stored(&first),
        stored(&second)
    );
    assert!(stored(&second) > 0);
    // No lock object accumulates: at most the one instance lock, replaced each backup.
    assert!(
        locks.len() <= 1 && locks_after.len() <= 1,
        "{locks:?} then {locks_after:?}"
    );

    // The recovery points' manifests record the same figures as their jobs.
    let mut from_points: Vec<u64> = files_under(&dir.join("recovery-points"))
        .iter()
        .map(|f| {
            let file: serde_json::Value =
                serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
            file["manifest"]["stats"]["bytesStored"].as_u64().unwrap()
        })
        .collect();
    from_points.sort();
    let mut from_jobs = vec![stored(&first), stored(&second)];
    from_jobs.sort();
    assert_eq!(from_points, from_jobs);
}

/// A database shaped like the public sample databases (a DVD-rental schema): a score of
/// tables with serial keys, foreign keys, indexes, a full-text column, views, functions,
/// triggers, comments and grants to another role, and a few MB of rows of words, names,
/// dates and amounts (deterministic: the random generator is seeded). Its archive's table
/// of contents runs to hundreds of entries, as the sample databases' did.
fn rental_database(prefix: &str) -> String {
    let c = cluster();
    let db = c.create_database(prefix);
    let words = "ARRAY['academy','ace','adaptation','affair','african','agent','airplane','airport',\
        'alabama','aladdin','alamo','alaska','ali','alice','alien','alley','alone','amadeus','amelie',\
        'american','amistad','anaconda','angels','annie','anonymous','antitrust','anything','apache',\
        'apocalypse','apollo','arabia','arachnophobia','arizona','armageddon','army','arsenic','artist',\
        'attacks','attraction','autumn','baby','backlash','badman','bang','banger','barbarella','bear',\
        'beauty','bed','behavior','bells','beneath','berets','betrayed','beverly','bikini','bilko','bingo',\
        'birch','bird','blade','blanket','blindness','blood','blues','boiled','bonnie','boogie','boondock',\
        'borrowers','bound','bowfinger','brannigan','braveheart','breakfast','bride','bringing','brooklyn',\
        'brotherhood','bubble','bucket','bugsy','bull','bulworth','bunch','butch','butterfly','cabin',\
        'a','the','of','and','in','who','must','find','chase','battle','meet','fight','outrace','defeat',\
        'sink','build','discover','epic','drama','story','documentary','boring','thoughtful','lacklusture',\
        'insightful','astounding','fateful','stunning','emotional','intrepid','touching','beautiful',\
        'database','administrator','dentist','moose','crocodile','feminist','robot','squirrel','monkey',\
        'shark','girl','boy','student','pioneer','explorer','technical','writer','hunter','mad','scientist']";
    let count = words.matches(',').count() + 1;
    let w = |n: &str| format!("({words})[1 + floor(random() * {count})::int]{n}");
    let sentence = (0..14)
        .map(|_| w(""))
        .collect::<Vec<_>>()
        .join(" || ' ' || ");
    let title = format!("upper({} || ' ' || {})", w(""), w(""));
    c.psql(
        &db,
        &format!(
            "SELECT setseed(0.16);
             CREATE ROLE {db}_reader NOLOGIN;
             CREATE TYPE public.mpaa_rating AS ENUM ('G','PG','PG-13','R','NC-17');
             CREATE DOMAIN public.year AS integer CHECK (VALUE >= 1901 AND VALUE <= 2155);
             CREATE FUNCTION public.last_updated() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN NEW.last_update = CURRENT_TIMESTAMP; RETURN NEW; END $$;
             CREATE TABLE public.country (country_id serial PRIMARY KEY, country text NOT NULL,
                 last_update timestamptz NOT NULL DEFAULT now());
             CREATE TABLE public.city (city_id serial PRIMARY KEY, city text NOT NULL,
                 country_id int NOT NULL REFERENCES public.country, last_update timestamptz NOT NULL DEFAULT now());
             CREATE TABLE public.address (address_id serial PRIMARY KEY, address text NOT NULL, address2 text,
                 district text NOT NULL, city_id int NOT NULL REFERENCES public.city, postal_code text,
                 phone text NOT NULL, last_update timestamptz NOT NULL DEFAULT now());
             CREATE TABLE public.language (language_id serial PRIMARY KEY, name char(20) NOT NULL,
                 last_update timestamptz NOT NULL DEFAULT now());
             CREATE TABLE public.category (category_id serial PRIMARY KEY, name text NOT NULL,
                 last_update timestamptz NOT NULL DEFAULT now());
             CREATE TABLE public.actor (actor_id serial PRIMARY KEY, first_name text NOT NULL,
                 last_name text NOT NULL, last_update timestamptz NOT NULL DEFAULT now());
             CREATE TABLE public.film (film_id serial PRIMARY KEY, title text NOT NULL, description text,
                 release_year public.year, language_id int NOT NULL REFERENCES public.language,
                 rental_duration smallint NOT NULL DEFAULT 3, rental_rate numeric(4,2) NOT NULL DEFAULT 4.99,
                 length smallint, replacement_cost numeric(5,2) NOT NULL DEFAULT 19.99,
                 rating public.mpaa_rating DEFAULT 'G', last_update timestamptz NOT NULL DEFAULT now(),
                 special_features text[], fulltext tsvector NOT NULL);
             CREATE TABLE public.film_actor (actor_id int NOT NULL REFERENCES public.actor,
                 film_id int NOT NULL REFERENCES public.film, last_update timestamptz NOT NULL DEFAULT now(),
                 PRIMARY KEY (actor_id, film_id));
             CREATE TABLE public.film_category (film_id int NOT NULL REFERENCES public.film,
                 category_id int NOT NULL REFERENCES public.category, last_update timestamptz NOT NULL DEFAULT now(),
                 PRIMARY KEY (film_id, category_id));
             CREATE TABLE public.store (store_id serial PRIMARY KEY, manager_staff_id int NOT NULL,
                 address_id int NOT NULL REFERENCES public.address, last_update timestamptz NOT NULL DEFAULT now());
             CREATE TABLE public.staff (staff_id serial PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL,
                 address_id int NOT NULL REFERENCES public.address, email text, store_id int NOT NULL REFERENCES public.store,
                 active boolean NOT NULL DEFAULT true, username text NOT NULL, password text,
                 last_update timestamptz NOT NULL DEFAULT now(), picture bytea);
             CREATE TABLE public.customer (customer_id serial PRIMARY KEY, store_id int NOT NULL REFERENCES public.store,
                 first_name text NOT NULL, last_name text NOT NULL, email text,
                 address_id int NOT NULL REFERENCES public.address, activebool boolean NOT NULL DEFAULT true,
                 create_date date NOT NULL DEFAULT CURRENT_DATE, last_update timestamptz DEFAULT now(), active int);
             CREATE TABLE public.inventory (inventory_id serial PRIMARY KEY, film_id int NOT NULL REFERENCES public.film,
                 store_id int NOT NULL REFERENCES public.store, last_update timestamptz NOT NULL DEFAULT now());
             CREATE TABLE public.rental (rental_id serial PRIMARY KEY, rental_date timestamptz NOT NULL,
                 inventory_id int NOT NULL REFERENCES public.inventory, customer_id int NOT NULL REFERENCES public.customer,
                 return_date timestamptz, staff_id int NOT NULL REFERENCES public.staff,
                 last_update timestamptz NOT NULL DEFAULT now());
             CREATE TABLE public.payment (payment_id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES public.customer,
                 staff_id int NOT NULL REFERENCES public.staff, rental_id int REFERENCES public.rental,
                 amount numeric(5,2) NOT NULL, payment_date timestamptz NOT NULL);

             INSERT INTO public.country (country, last_update) SELECT initcap({w0}), '2022-02-15 09:44:00+00' FROM generate_series(1, 109);
             INSERT INTO public.city (city, country_id, last_update) SELECT initcap({w0} || ' ' || {w0}), 1 + g % 109, '2022-02-15 09:45:25+00' FROM generate_series(1, 600) g;
             INSERT INTO public.address (address, district, city_id, postal_code, phone, last_update)
                 SELECT (g * 37 % 1900) || ' ' || initcap({w0}) || ' Street', initcap({w0}), 1 + g % 600,
                        lpad((g * 7919 % 99999)::text, 5, '0'), (100000000000 + g * 7919 % 900000000000)::text, '2022-02-15 09:45:30+00'
                 FROM generate_series(1, 603) g;
             INSERT INTO public.language (name, last_update) VALUES ('English','2022-02-15 10:02:19+00'),('Italian','2022-02-15 10:02:19+00'),
                 ('Japanese','2022-02-15 10:02:19+00'),('Mandarin','2022-02-15 10:02:19+00'),('French','2022-02-15 10:02:19+00'),('German','2022-02-15 10:02:19+00');
             INSERT INTO public.category (name, last_update) SELECT initcap({w0}), '2022-02-15 10:02:19+00' FROM generate_series(1, 16);
             INSERT INTO public.actor (first_name, last_name, last_update) SELECT upper({w0}), upper({w0}), '2022-02-15 09:34:33+00' FROM generate_series(1, 200);
             INSERT INTO public.film (title, description, release_year, language_id, rental_duration, rental_rate, length,
                     replacement_cost, rating, last_update, special_features, fulltext)
                 SELECT {title}, initcap({sentence}), 2006 + g % 20, 1, 3 + g % 5, (ARRAY[0.99, 2.99, 4.99])[1 + g % 3], 46 + g % 140,
                        9.99 + g % 21, (ARRAY['G','PG','PG-13','R','NC-17'])[1 + g % 5]::public.mpaa_rating, '2022-02-15 10:03:42+00',
                        string_to_array((ARRAY['Trailers', 'Commentaries,Deleted Scenes', 'Behind the Scenes', 'Trailers,Commentaries'])[1 + g % 4], ','),
                        ''::tsvector
                 FROM generate_series(1, 1000) g;
             UPDATE public.film SET fulltext = to_tsvector('english', title || ' ' || description);
             INSERT INTO public.film_actor (actor_id, film_id, last_update)
                 SELECT DISTINCT 1 + (g * 7 + k * 13) % 200, 1 + g % 1000, timestamptz '2022-02-15 10:05:03+00'
                 FROM generate_series(0, 999) g, generate_series(0, 4) k;
             INSERT INTO public.film_category (film_id, category_id, last_update) SELECT g, 1 + g % 16, '2022-02-15 10:07:09+00' FROM generate_series(1, 1000) g;
             INSERT INTO public.store (manager_staff_id, address_id, last_update) VALUES (1, 1, '2022-02-15 09:57:12+00'), (2, 2, '2022-02-15 09:57:12+00');
             INSERT INTO public.staff (first_name, last_name, address_id, email, store_id, username, password, last_update)
                 VALUES ('Mike','Hillyer',3,'Mike.Hillyer@sakilastaff.com',1,'Mike','8cb2237d0679ca88db6464eac60da96345513964','2022-05-16 16:13:11+00'),
                        ('Jon','Stephens',4,'Jon.Stephens@sakilastaff.com',2,'Jon','8cb2237d0679ca88db6464eac60da96345513964','2022-05-16 16:13:11+00');
             INSERT INTO public.customer (store_id, first_name, last_name, email, address_id, create_date, last_update, active)
                 SELECT 1 + g % 2, initcap({w0}), initcap({w0}), upper({w0}) || '.' || upper({w0}) || '@sakilacustomer.org',
                        5 + g % 598, date '2022-02-14', '2022-02-15 09:57:20+00', 1
                 FROM generate_series(1, 599) g;
             INSERT INTO public.inventory (film_id, store_id, last_update) SELECT 1 + g % 1000, 1 + g % 2, '2022-02-15 10:09:17+00' FROM generate_series(1, 4581) g;
             INSERT INTO public.rental (rental_date, inventory_id, customer_id, return_date, staff_id, last_update)
                 SELECT timestamptz '2022-05-24 22:53:30+00' + g * interval '7 minutes 13 seconds',
                        1 + (g * 7919) % 4581, 1 + (g * 31) % 599,
                        timestamptz '2022-05-24 22:53:30+00' + g * interval '7 minutes 13 seconds' + (1 + g % 9) * interval '1 day' + (g % 86400) * interval '1 second',
                        1 + g % 2, timestamptz '2022-02-16 02:30:53+00'
                 FROM generate_series(1, 16044) g;
             INSERT INTO public.payment (customer_id, staff_id, rental_id, amount, payment_date)
                 SELECT 1 + (g * 31) % 599, 1 + g % 2, g, (ARRAY[0.99, 2.99, 4.99, 5.99, 1.99, 7.99])[1 + g % 6],
                        timestamptz '2022-05-25 11:30:37+00' + g * interval '7 minutes 13 seconds' + (g % 3600) * interval '1 second'
                 FROM generate_series(1, 16044) g;
             ALTER TABLE public.store ADD FOREIGN KEY (manager_staff_id) REFERENCES public.staff DEFERRABLE INITIALLY DEFERRED;
             CREATE INDEX idx_actor_last_name ON public.actor (last_name);
             CREATE INDEX idx_fk_city_id ON public.address (city_id);
             CREATE INDEX idx_fk_country_id ON public.city (country_id);
             CREATE INDEX idx_fk_address_id ON public.customer (address_id);
             CREATE INDEX idx_fk_store_id ON public.customer (store_id);
             CREATE INDEX idx_last_name ON public.customer (last_name);
             CREATE INDEX film_fulltext_idx ON public.film USING gist (fulltext);
             CREATE INDEX idx_fk_language_id ON public.film (language_id);
             CREATE INDEX idx_title ON public.film (title);
             CREATE INDEX idx_fk_film_id ON public.film_actor (film_id);
             CREATE INDEX idx_store_id_film_id ON public.inventory (store_id, film_id);
             CREATE INDEX idx_fk_inventory_id ON public.rental (inventory_id);
             CREATE UNIQUE INDEX idx_unq_rental ON public.rental (rental_date, inventory_id, customer_id);
             CREATE INDEX idx_fk_payment_rental ON public.payment (rental_id);
             CREATE INDEX idx_fk_payment_customer ON public.payment (customer_id);
             CREATE VIEW public.actor_info AS SELECT a.actor_id, a.first_name, a.last_name, count(fa.film_id) AS films
                 FROM public.actor a LEFT JOIN public.film_actor fa USING (actor_id) GROUP BY a.actor_id;
             CREATE VIEW public.customer_list AS SELECT cu.customer_id AS id, cu.first_name || ' ' || cu.last_name AS name,
                 a.address, a.postal_code AS \"zip code\", a.phone, city.city, country.country
                 FROM public.customer cu JOIN public.address a USING (address_id) JOIN public.city USING (city_id)
                 JOIN public.country USING (country_id);
             CREATE VIEW public.film_list AS SELECT film.film_id AS fid, film.title, film.description, category.name AS category,
                 film.rental_rate AS price, film.length, film.rating FROM public.category
                 LEFT JOIN public.film_category USING (category_id) LEFT JOIN public.film USING (film_id);
             CREATE VIEW public.sales_by_store AS SELECT s.store_id, sum(p.amount) AS total_sales
                 FROM public.payment p JOIN public.staff s USING (staff_id) GROUP BY s.store_id;
             CREATE FUNCTION public.film_in_stock(p_film_id int, p_store_id int) RETURNS SETOF int LANGUAGE sql AS
                 $$ SELECT inventory_id FROM public.inventory WHERE film_id = $1 AND store_id = $2 $$;
             CREATE FUNCTION public.get_customer_balance(p_customer_id int) RETURNS numeric LANGUAGE sql AS
                 $$ SELECT coalesce(sum(amount), 0) FROM public.payment WHERE customer_id = $1 $$;
             CREATE FUNCTION public.inventory_held_by_customer(p_inventory_id int) RETURNS int LANGUAGE sql AS
                 $$ SELECT customer_id FROM public.rental WHERE return_date IS NULL AND inventory_id = $1 $$;
             CREATE AGGREGATE public.group_concat(text) (SFUNC = textcat, STYPE = text);
             CREATE MATERIALIZED VIEW public.rental_by_category AS SELECT c.name AS category, sum(p.amount) AS total_sales
                 FROM public.payment p JOIN public.rental r USING (rental_id) JOIN public.inventory i USING (inventory_id)
                 JOIN public.film_category fc USING (film_id) JOIN public.category c USING (category_id) GROUP BY c.name;
             COMMENT ON TABLE public.film IS 'Films in the catalogue, one row each';
             COMMENT ON TABLE public.rental IS 'One row per rental of one inventory item';
             COMMENT ON COLUMN public.film.fulltext IS 'The title and description, for full-text search';
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {db}_reader;
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {db}_reader;",
            w0 = w(""),
        ),
    );
    for t in [
        "actor",
        "address",
        "category",
        "city",
        "country",
        "customer",
        "film",
        "film_actor",
        "film_category",
        "inventory",
        "language",
        "payment",
        "rental",
        "staff",
        "store",
    ] {
        c.psql(
            &db,
            &format!(
                "CREATE TRIGGER last_updated BEFORE UPDATE ON public.{t} FOR EACH ROW \
                 EXECUTE FUNCTION public.last_updated();"
            )
            .replace(
                "ON public.payment FOR EACH ROW",
                "ON public.payment FOR EACH ROW WHEN (false)",
            ),
        );
    }
    c.psql(&db, "VACUUM ANALYZE");
    db
}

/// The first backup of a small database shaped like the public sample databases adds no
/// more bytes to the vault (packs, index file, manifest) than `pg_dump -Fc` writes for it.
/// It stored 1.17x to 1.20x the `-Fc` file on such databases: the manifest alone was 66 to
/// 178 KB of pretty-printed JSON, most of it the table of contents.
#[test]
fn a_small_databases_first_backup_costs_no_more_than_pg_dump_fc() {
    let w = World::new();
    let db = rental_database("sizes_rental");
    let dir = w.vault_with_policy("V");
    let instance = w.protect("V", &db, &w.admin_secret(&db));

    let fc = w.path("rental.dump");
    let out = cluster()
        .command("pg_dump")
        .args(["-Fc", "-f"])
        .arg(&fc)
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fc_bytes = std::fs::metadata(&fc).unwrap().len();

    let (empty, _) = vault_bytes(&dir);
    let first = w.backup("V", &instance);
    let (after, _) = vault_bytes(&dir);
    let grown = after - empty;
    let manifests: u64 = files_under(&dir.join("recovery-points"))
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    let read = first["properties"]["result"]["bytesRead"].as_u64().unwrap();
    eprintln!(
        "rental database: stream {read} bytes; pg_dump -Fc {fc_bytes}; first backup grew the vault by {grown} ({:.3}x), of which the manifest {manifests}; reported {}",
        grown as f64 / fc_bytes as f64,
        stored(&first)
    );
    assert!(
        fc_bytes > 500_000,
        "a realistic sample: -Fc is {fc_bytes} bytes"
    );
    assert!(
        grown <= fc_bytes,
        "the first backup grew the vault by {grown} bytes, {:.3}x the {fc_bytes}-byte `pg_dump -Fc` file (manifest {manifests} bytes)",
        grown as f64 / fc_bytes as f64
    );
    assert_eq!(stored(&first), grown);
}
