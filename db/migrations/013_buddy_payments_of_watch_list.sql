-- A trust on the challenged-providers watch list can receive buddying with the same steps and payments as a
-- regime (issue 16 item 4). Its partnership's payments are recorded against the watch-list entry, which is not in
-- `regimes` (every public view reads that table), as central funding is (010). The reference to `regimes` goes;
-- every reader of buddy payments selects them by a regime's id (costs, evaluation), so an entry's payments are in
-- no national figure. The once-per-quarter key, the final trigger and the lines' total stay as they were.

ALTER TABLE buddy_payments DROP CONSTRAINT buddy_payments_regime_id_fkey;
