/* Process titles ("voxbridge: worker") shown by ps: the argv area is reused. */
#ifndef VB_MASTER_PROCTITLE_H
#define VB_MASTER_PROCTITLE_H

void vb_proctitle_init(int argc, char **argv);
void vb_proctitle_set(const char *title);

#endif
